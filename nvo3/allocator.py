"""The C allocator of a long-running daemon: glibc malloc settings and returning free memory.

Most of a daemon's memory is C memory (libyang trees, lxml documents, message buffers, SSH
state), allocated by glibc's malloc. Two of glibc's defaults make a NETCONF daemon's resident
size grow with the sessions it has served rather than with what it holds (measured on a
store-only NVE holding 10,000 remote MACs, 20 sessions opened and closed, one get-config
each: 104 MB with the defaults, 65 MB with :func:`tune`, 59 MB with :func:`tune` and
:func:`release_free_memory` after each session):

- the mmap threshold is dynamic: each time a block served by mmap is freed, the threshold
  rises to its size (up to 32 MiB). After the first large message (a 1 MB get-config reply,
  a 10,000-entry edit) blocks of that size come from the arenas' heaps instead, and what is
  freed there stays in the process, fragmented between live blocks;
- each thread that meets contention gets an arena of its own (up to 8 per core), a session
  being a thread: the free memory of one session's arena is not reused by the next session.

:func:`tune` fixes the threshold (so large buffers go back to the system when freed) and
caps the arenas; :func:`release_free_memory` (``malloc_trim``) returns the free pages inside
the heaps, which glibc only does by itself at a heap's top. Both do nothing where the C
library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache

log = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Blocks from this size up are mapped on their own and unmapped when freed (glibc's default
#: start value, made fixed).
MMAP_THRESHOLD = 256 * 1024
#: At most this many malloc arenas, whatever the number of sessions (threads).
ARENA_MAX = 2


@cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (which has mallopt and malloc_trim)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt",
                                                  "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def is_glibc() -> bool:
    """True when the process's C library is glibc (where these settings apply)."""
    return _glibc() is not None


def tune() -> bool:
    """Set a fixed mmap threshold and a cap on arenas for this process (call it before the
    daemon starts its threads); False when the C library is not glibc or refused."""
    libc = _glibc()
    if libc is None:
        log.debug("not glibc: the allocator keeps its defaults")
        return False
    done = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and libc.mallopt(M_ARENA_MAX, ARENA_MAX) == 1)
    if not done:
        log.warning("glibc refused the daemon's malloc settings")
    return done


def release_free_memory() -> None:
    """Give the free pages of every malloc arena back to the system (``malloc_trim(0)``)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
