"""Netlink event monitor: tells the agent what changed so it can repair drift.

A thread reads a NETLINK_ROUTE socket (opened inside the target namespace)
subscribed to RTMGRP_LINK and RTMGRP_NEIGH, decodes RTM_NEWLINK/RTM_DELLINK
and RTM_NEWNEIGH/RTM_DELNEIGH with ``struct`` and calls ``callback`` with the
batch of :class:`Event` read in one go.  The agent typically reacts with
``tracker.observe(kernel.dump())`` and an apply (a resync), or with
``observe_one`` for FDB events.  The loop polls with a bounded timeout so
:meth:`Monitor.stop` returns within ~0.2 s.
"""

from __future__ import annotations

import logging
import select
import struct
import threading
from dataclasses import dataclass
from typing import Callable

from nvo3.dataplane import nlbulk

log = logging.getLogger(__name__)
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME = 3
_IFI = struct.Struct("=BxHiII")


@dataclass(frozen=True)
class Event:
    """One kernel change: ``what`` is "link", "fdb" or "neigh"; ``action`` "new"/"del"."""

    what: str
    action: str
    ifindex: int
    ifname: str | None = None
    mac: str | None = None
    dst: str | None = None
    state: int = 0
    flags: int = 0


def decode(data: bytes) -> list[Event]:
    """Events in one datagram from the monitor socket."""
    out: list[Event] = []
    for mtype, _f, _seq, payload in nlbulk.iter_messages(data):
        if mtype in (nlbulk.RTM_NEWNEIGH, nlbulk.RTM_DELNEIGH):
            e = nlbulk.parse_neigh(payload)
            out.append(Event("fdb" if e.family == nlbulk.AF_BRIDGE else "neigh",
                             "new" if mtype == nlbulk.RTM_NEWNEIGH else "del", e.ifindex,
                             mac=nlbulk.mac_text(e.mac) if e.mac and len(e.mac) == 6 else None,
                             dst=nlbulk.ip_text(e.dst) if e.dst else None,
                             state=e.state, flags=e.flags))
        elif mtype in (RTM_NEWLINK, RTM_DELLINK):
            _fam, _type, index, flags, _change = _IFI.unpack_from(payload)
            out.append(Event("link", "new" if mtype == RTM_NEWLINK else "del", index,
                             ifname=_ifname(payload), flags=flags))
    return out


def _ifname(payload: memoryview) -> str | None:
    off = _IFI.size
    while off + 4 <= len(payload):
        alen, atype = struct.unpack_from("=HH", payload, off)
        if alen < 4:
            break
        if atype == IFLA_IFNAME:
            return bytes(payload[off + 4: off + alen]).rstrip(b"\0").decode()
        off += (alen + 3) & ~3
    return None


class Monitor:
    """A daemon thread delivering kernel events of one namespace to ``callback``."""

    def __init__(self, callback: Callable[[list[Event]], None], netns: str | None = None,
                 poll: float = 0.2) -> None:
        self.callback, self.netns, self.poll = callback, netns, poll
        self._stop = threading.Event()
        self.sock = nlbulk.open_socket(netns, groups=RTMGRP_LINK | RTMGRP_NEIGH)
        self.sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"nvo3-monitor-{netns}",
                                        daemon=True)

    def start(self) -> "Monitor":
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (bounded) and close the socket."""
        self._stop.set()
        self._thread.join(timeout)
        self.sock.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            ready, _w, _x = select.select([self.sock], [], [], self.poll)
            if not ready:
                continue
            try:
                events = decode(self.sock.recv(nlbulk.BUF))
            except BlockingIOError:
                continue
            except OSError as exc:  # ENOBUFS: events were lost, the agent must resync
                log.warning("monitor lost events (%s); signalling a resync", exc)
                events = [Event("overrun", "resync", 0)]
            if not events:
                continue
            try:
                self.callback(events)
            except Exception:
                failures += 1
                if failures == 1:
                    log.exception("monitor callback failed")
