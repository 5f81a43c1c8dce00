"""camheald: the camheal camera-pipeline daemon."""
from camheal.constants import VERSION as __version__

__all__ = ["__version__"]
