"""The source interface every camera backend implements."""

from __future__ import annotations

import abc

import numpy as np


class SourceClosed(Exception):
    """The source has no more frames right now (device gone, stream dropped, end of input)."""


class SourceEnded(SourceClosed):
    """The source has no more frames, ever (a file played once to its end, ``loop=0``): the
    pipeline stops capturing from it instead of reconnecting."""


class Source(abc.ABC):
    """A camera: yields RGB frames, blocking, from a capture thread (never the event loop).

    Lifecycle: ``open()`` (may raise ``SourceClosed`` when the device is absent), then
    ``read()`` until it raises ``SourceClosed``, then ``close()``. The pipeline reconnects by
    calling ``open()`` again after a back-off, unless it was ``SourceEnded``.
    """

    #: the URI the user gave, shown in status and on D-Bus
    uri: str = ""
    #: a live camera produces frames whether we read them or not (drop when behind); a file
    #: read as fast as it decodes is not live (the pipeline then waits instead of dropping)
    live: bool = True

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the device; raise SourceClosed when it is not there."""

    @abc.abstractmethod
    def read(self) -> np.ndarray:
        """Return the next frame, HxWx3 uint8 RGB, owned by the caller (never reused).

        Paces itself to the source rate (a live camera blocks until the next frame).
        """

    def read_native(self) -> tuple[np.ndarray, bool]:
        """Like :meth:`read`, in the decoder's own channel order: ``(pixels, is_bgr)``.

        The capture path uses this, so that a BGR decoder (OpenCV) does not pay for a
        conversion on the thread that sets the frame rate; whoever writes the final pixels
        swaps the channels on the way (see ``PublishedFrame``). The default is ``read()``.
        """
        return self.read(), False

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release the device; safe to call twice."""

    def injected(self) -> str:
        """Name of the defect this source injects right now ("" for real cameras)."""
        return ""

    @property
    @abc.abstractmethod
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames; best known value before the first frame."""

    @property
    @abc.abstractmethod
    def fps(self) -> float:
        """Nominal frame rate (frames per second)."""
