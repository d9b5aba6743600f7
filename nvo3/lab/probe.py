"""A 1 ms UDP probe across the overlay, for the demo's migration and `nvo3 bench migration`.

* The sender (`python -m nvo3.lab.probe send DST PORT INTERVAL_MS SECONDS`) runs inside the
  talking VM's namespace, started by :func:`start_sender` (the caller keeps its PID and
  stops it). Datagram k carries k and its send time (CLOCK_MONOTONIC, one clock for every
  namespace) and leaves at t0 + k * interval; when the sender falls behind it catches up, so
  every sequence number is sent and a missing one is a datagram the network lost.
* The receiver (:class:`Receiver`, a thread of the caller) listens inside every namespace of
  the moving VM: a migrated VM is a new namespace on its new host, so the receiver watches
  /run/netns and opens a socket in each matching namespace as soon as it appears (before the
  vServer activates the VM), and closes it when the namespace goes. Sockets are opened with
  setns(2) on the receiver's own thread and stay in their namespace afterwards.

Loss is counted per move from the sequence numbers (`lost_between`), in milliseconds.
"""

from __future__ import annotations

import ctypes
import fnmatch
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = struct.Struct("!Qd")          # sequence number, send time (monotonic seconds)
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in(netns: str, port: int) -> socket.socket:
    """A UDP socket bound to 0.0.0.0:port inside namespace `netns` (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind(("0.0.0.0", port))
            s.setblocking(False)
            return s
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


@dataclass
class Receiver:
    """Receives the probe in every namespace matching `pattern` (fnmatch), while running."""

    pattern: str
    port: int
    received: dict[int, float] = field(default_factory=dict)   # seq -> send time
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    opened: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Receiver:
        self._watch()
        self._thread = threading.Thread(target=self._run, name="probe-rx", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for s in self.sockets.values():
            s.close()
        self.sockets.clear()

    def _watch(self) -> None:
        try:
            present = {n for n in os.listdir(NETNS_DIR) if fnmatch.fnmatchcase(n, self.pattern)}
        except OSError:
            return
        for gone in set(self.sockets) - present:
            self.sockets.pop(gone).close()
        for new in present - set(self.sockets):
            try:
                self.sockets[new] = socket_in(new, self.port)
                self.opened.append((time.monotonic(), new))
            except OSError as exc:          # the namespace went between listdir and open
                self.errors.append(f"{new}: {exc}")

    def _run(self) -> None:
        while not self._stop.is_set():
            socks = list(self.sockets.values())
            if socks:
                ready, _, _ = select.select(socks, [], [], 0.001)
            else:
                ready = []
                time.sleep(0.001)
            for s in ready:
                while True:
                    try:
                        data = s.recv(64)
                    except (BlockingIOError, OSError):
                        break
                    if len(data) >= FORMAT.size:
                        seq, sent = FORMAT.unpack_from(data)
                        self.received[seq] = sent
            self._watch()


def start_sender(netns: str, dst: str, port: int, interval_ms: float, seconds: float,
                 ) -> subprocess.Popen[str]:
    """The sender process inside `netns` (the caller stops it by PID; it also ends itself)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "nvo3.lab.probe", "send", dst,
         str(port), str(interval_ms), str(seconds)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def stop_sender(proc: subprocess.Popen[str], timeout: float = 5.0) -> dict[str, float]:
    """Stop the sender (SIGTERM by PID) and return what it reports: t0, interval, sent."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=timeout)
    fields = dict(item.split("=") for item in (out or "").split())
    return {k: float(v) for k, v in fields.items()}


def lost_between(received: dict[int, float], t0: float, interval_s: float, start: float,
                 end: float) -> int:
    """Datagrams sent in [start, end] (monotonic) that never arrived."""
    first = max(0, int((start - t0) / interval_s))
    last = int((end - t0) / interval_s)
    return sum(1 for seq in range(first, last + 1) if seq not in received)


def _send(dst: str, port: int, interval_ms: float, seconds: float) -> None:
    import signal
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = interval_ms / 1000
    t0 = time.monotonic()
    seq = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now - t0 > seconds:
                break
            due = t0 + seq * interval
            if due > now:
                time.sleep(due - now)
            try:
                s.sendto(FORMAT.pack(seq, t0 + seq * interval), (dst, port))
            except OSError:
                pass                 # no route / ARP failure while the VM moves: lost
            seq += 1
    finally:
        print(f"t0={t0} interval={interval} sent={seq}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "send":
        _send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit("usage: python -m nvo3.lab.probe send DST PORT INTERVAL_MS SECONDS")
