"""Ordinary client disconnects logged as what they are: one INFO line, no traceback.

A client that goes away without <close-session> (EOF, a TCP reset, a connection closed
before the SSH banner) is not a server error, but paramiko's transport thread logs it at
ERROR, the banner case with a traceback of one record per line. `install()` puts a filter
on paramiko's transport logger that turns those records into INFO and drops the traceback
that follows them (on the same thread); every other paramiko record passes unchanged.
"""

from __future__ import annotations

import logging
import threading

#: paramiko messages (at ERROR) that only say the peer went away.
ORDINARY = (
    "Socket exception: Connection reset by peer",
    "Socket exception: Broken pipe",
    "Socket exception: Bad file descriptor",
    "Exception (server): Error reading SSH protocol banner",
    "Exception (server): Connection reset by peer",
)
PARAMIKO_TRANSPORT_LOGGER = "paramiko.transport"


class OrdinaryDisconnects(logging.Filter):
    """Demotes paramiko's disconnect errors to INFO; drops their traceback lines."""

    def __init__(self) -> None:
        super().__init__()
        self._after = threading.local()      # a demoted record's traceback follows

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a traceback line of a demoted record; the record (perhaps demoted)."""
        if record.levelno < logging.ERROR:
            self._after.demoted = False
            return True
        message = record.getMessage()
        if getattr(self._after, "demoted", False) and not message.startswith(ORDINARY):
            return False                     # the traceback of the line just demoted
        if message.startswith(ORDINARY):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = f"client disconnected: {message}", ()
            self._after.demoted = True
            return True
        return True


_FILTER = OrdinaryDisconnects()


def install() -> None:
    """Filter paramiko's transport logger (idempotent)."""
    logger = logging.getLogger(PARAMIKO_TRANSPORT_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
