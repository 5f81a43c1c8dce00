"""camheal client SDK: camera frames and camera health from the camheald daemon over D-Bus.

Importing this package needs only numpy and dbus-fast.
"""

from camheal.aio import AsyncCamera, AsyncClient
from camheal.client import Camera, Client
from camheal.constants import ANOMALIES, VERSION
from camheal.errors import CamhealError
from camheal.frame import Frame

__version__ = VERSION
__all__ = ["ANOMALIES", "AsyncCamera", "AsyncClient", "Camera", "CamhealError", "Client",
           "Frame", "__version__"]
