"""Run a CPU-bound computation with a CPU-time budget, stopping it when the budget is spent.

libxml2 evaluates an XPath expression in C, where no Python thread can interrupt it, so a
costly one (an xpath filter of cost O(n^4)) would keep a core busy for as long as it likes.
`run_with_budget` runs the computation in a forked child that shares the parent's memory
copy-on-write (nothing is serialized on the way in), reads the child's result bytes through a
pipe, and kills the child once its CPU time passes the budget. The child also carries
RLIMIT_CPU and dies with its parent (PR_SET_PDEATHSIG), so nothing outlives the request.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import select
import signal
import threading
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_TICKS = os.sysconf("SC_CLK_TCK")
_POLL_S = 0.02


class BudgetExceeded(Exception):
    """The computation used more CPU time than its budget and was stopped."""


class ChildFailed(Exception):
    """The computation raised; the message is the exception's text."""


def run_with_budget(compute: Callable[[], bytes], budget: float) -> bytes:
    """`compute()`'s result, computed in a child process given `budget` CPU seconds.

    Raises BudgetExceeded when the child spends more (it is killed), ChildFailed when
    `compute` raised (with its message), OSError when no child can be forked."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # the child
        os.close(read_fd)
        _child(compute, budget, write_fd)
    os.close(write_fd)
    try:
        chunks = _collect(pid, read_fd, budget)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    _reap_soon(pid)
    data = b"".join(chunks)
    if data[:1] == b"\x00":
        return data[1:]
    if data[:1] == b"\x01":
        raise ChildFailed(data[1:].decode("utf-8", "replace"))
    raise ChildFailed("the computation ended without a result")


def _child(compute: Callable[[], bytes], budget: float, write_fd: int) -> None:
    """Compute and write the framed result; never returns."""
    status = 0
    try:
        try:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        seconds = max(1, math.ceil(budget)) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        try:
            out = b"\x00" + compute()
        except Exception as exc:   # reported to the parent, which raises ChildFailed
            out = b"\x01" + str(exc).encode("utf-8", "replace")
        view = memoryview(out)
        while view:
            view = view[os.write(write_fd, view):]
        os.close(write_fd)         # EOF now: the parent need not wait for this exit
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def _collect(pid: int, read_fd: int, budget: float) -> list[bytes]:
    """The child's output until EOF; raises BudgetExceeded when its CPU time passes
    `budget` (or its wall time passes ten times that, on a crowded machine)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + 10 * budget + 1
    while True:
        ready, _, _ = select.select([read_fd], [], [], _POLL_S)
        if ready:
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                return chunks
            chunks.append(chunk)
            continue
        if _cpu_seconds(pid) > budget or time.monotonic() > deadline:
            raise BudgetExceeded(f"stopped after {budget:g} s of CPU time")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS     # utime, stime


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap_soon(pid: int) -> None:
    """Collect the child's exit status without waiting for it (a large process takes tens
    of milliseconds to exit)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if not done:
        threading.Thread(target=_reap, args=(pid,), daemon=True, name="budget-reaper").start()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
