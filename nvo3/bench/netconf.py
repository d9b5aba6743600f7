"""`nvo3 bench netconf`: the engine's speed and memory over real NETCONF/SSH sessions.

Every daemon is an NVE agent started with --store-only (its own process, loopback, a
temporary state directory; configuration is validated and persisted, the kernel is not
touched) and stopped by its PID. The client is the one behind the recorded Netopeer2 figures
(:mod:`nvo3.bench.reference_client`: ncclient, TICK 0.001, one session, sequential RPCs);
the subject is network 100's remote-mac list. With N = `entries` (10,000 by default):

1. one daemon, one session (as the client's phases b-e, the list removed before each):
   get-config round trip (p50 of 200); 1,000 one-entry edit-configs from empty (total);
   one edit-config of N entries, then a get-config of them; N entries deleted in one
   edit-config (``nc:operation="delete"`` on their container);
2. one fresh daemon per size 0, N and 10 N: that many entries loaded in one edit-config
   (which also creates their network), then 200 one-entry edit-configs (p50/p95);
3. one fresh daemon: RSS idle, with N entries, and after 10 and 20 further sessions, each
   opened, used (a get-config of everything and a one-entry change) and closed.

Figures only: nothing here asserts a time. Progress goes to stderr, the table to stdout
(:mod:`nvo3.bench.netconf_figures`: each figure beside Netopeer2's and its goal).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from nvo3.bench import reference_client as rc
from nvo3.bench.netconf_figures import FLAT_RSS_MB, figures, print_figures
from nvo3.launcher import RoleProcess, start_role

#: One-entry edits per loaded size, and get-configs for the round trip.
SAMPLES = 200
#: One-entry edits from empty.
EDITS = 1000
#: Sessions opened and closed before the last RSS reading (read also at half of them).
SESSIONS = 20
#: Wait after a close-session before reading RSS (the server tears the session down after
#: its reply).
SETTLE_S = 0.3


def run_bench(entries: int = 10_000) -> dict[str, Any]:
    """Measure, print the table and return every figure (see the module docstring)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nvo3-bench-") as tmp, rc.polling_tick():
        daemons = _Daemons(Path(tmp))
        with daemons.one("engine") as daemon:
            engine = _engine(daemon, entries)
        loaded = []
        for size in (0, entries, 10 * entries):
            with daemons.one(f"loaded-{size}") as daemon:
                loaded.append(_loaded_edits(daemon, size))
        with daemons.one("rss") as daemon:
            rss = _rss(daemon, entries)
    result = {"entries": entries,
              "client": f"ncclient, TICK {rc.TICK:g} s, one session, sequential RPCs",
              **engine, "loaded_edits": loaded, "rss": rss,
              "rss_mb": rss["after_20_sessions_mb"],
              "wall_s": round(time.perf_counter() - started, 1)}
    result["figures"] = [f.as_dict() for f in figures(result)]
    print_figures(result)
    return result


class _Daemons:
    """Store-only NVE daemons, each in a state directory of its own under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def one(self, name: str) -> Iterator[RoleProcess]:
        """A daemon for the block; stopped (by its PID) when the block ends."""
        state = self.root / name
        state.mkdir()
        daemon = start_role("nve", state, extra_args=("--store-only",))
        try:
            yield daemon
        finally:
            daemon.stop()


def _progress(label: str) -> None:
    print(f"  {label} ...", file=sys.stderr, flush=True)


def _timed(call: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    t0 = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - t0


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[round(0.95 * (len(ordered) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _config(xml: str) -> etree._Element:
    """Parsed before the clock starts, as the reference client does for large requests."""
    return etree.fromstring(xml.encode(), etree.XMLParser(huge_tree=True))


def _count(session: Any) -> int:
    return rc.count_remote_macs(session.get_config(source="running",
                                                   filter=rc.remote_macs_filter()))


def _expect(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: {got} remote MACs, expected {expected}")


def _engine(daemon: RoleProcess, n: int) -> dict[str, Any]:
    session = rc.open_session(daemon)
    try:
        rc.set_up(session)
        _progress(f"get-config round trip x{SAMPLES}")
        rtts = [_timed(session.get_config, source="running") for _ in range(SAMPLES)]

        _progress(f"{EDITS:,} one-entry edit-configs from empty")
        rc.clear(session)
        edits = [rc.remote_macs(rc.entries(i, 1)) for i in range(EDITS)]
        t0 = time.perf_counter()
        for edit in edits:
            session.edit_config(target="running", config=edit)
        edits_s = time.perf_counter() - t0
        _expect("after the one-entry edits", _count(session), EDITS)

        _progress(f"one edit-config of {n:,} entries, get-config of them")
        rc.clear(session)
        bulk = _config(rc.remote_macs(rc.entries(0, n)))
        bulk_s = _timed(session.edit_config, target="running", config=bulk)
        t0 = time.perf_counter()
        reply = session.get_config(source="running", filter=rc.remote_macs_filter())
        get_s = time.perf_counter() - t0
        _expect("get-config", rc.count_remote_macs(reply), n)

        _progress(f"delete {n:,} entries in one edit-config")
        rc.clear(session)
        session.edit_config(target="running", config=_config(rc.remote_macs(rc.entries(0, n))))
        delete = _config(rc.remote_macs("", "delete"))
        delete_s = _timed(session.edit_config, target="running", config=delete)
        _expect("after the delete", _count(session), 0)
    finally:
        session.close_session()
    return {"get_config_p50_ms": _ms(statistics.median(rtts)),
            "edits_1000_s": round(edits_s, 3), "bulk_edit_s": round(bulk_s, 3),
            "bulk_get_config_s": round(get_s, 3), "delete_list_s": round(delete_s, 3)}


def _loaded_edits(daemon: RoleProcess, size: int) -> dict[str, Any]:
    _progress(f"{SAMPLES} one-entry edit-configs with {size:,} entries present")
    session = rc.open_session(daemon)
    try:
        load_s = 0.0          # the load creates network 100 too, as the reference client's
        if size:
            load = rc.remote_macs(rc.entries(0, size))
            load_s = _timed(session.edit_config, target="running", config=load)
        times = []
        for k in range(SAMPLES):
            edit = rc.remote_macs(rc.entries(size + 100_000 + k, 1))
            times.append(_timed(session.edit_config, target="running", config=edit))
        _expect(f"{size:,} loaded, after the edits", _count(session), size + SAMPLES)
    finally:
        session.close_session()
    return {"entries": size, "load_s": round(load_s, 3),
            "p50_ms": _ms(statistics.median(times)), "p95_ms": _ms(_p95(times))}


def _rss_mb(daemon: RoleProcess) -> float:
    time.sleep(SETTLE_S)
    return round(daemon.rss_bytes() / 2**20, 1)


def _rss(daemon: RoleProcess, n: int) -> dict[str, Any]:
    _progress(f"RSS with {n:,} entries, {SESSIONS} sessions opened and closed")
    idle = _rss_mb(daemon)
    session = rc.open_session(daemon)
    try:
        session.edit_config(target="running", config=_config(rc.remote_macs(rc.entries(0, n))))
    finally:
        session.close_session()
    readings = {"idle_mb": idle, "loaded_mb": _rss_mb(daemon)}
    for s in range(1, SESSIONS + 1):
        session = rc.open_session(daemon)
        try:
            session.get_config(source="running")
            # a real change that keeps the count: entry s-1 moves to another VTEP
            moved = rc.entries(s - 1, 1).replace("198.18.0.2", "198.18.0.3")
            session.edit_config(target="running", config=rc.remote_macs(moved))
        finally:
            session.close_session()
        if s in (SESSIONS // 2, SESSIONS):
            readings[f"after_{s}_sessions_mb"] = _rss_mb(daemon)
    session = rc.open_session(daemon)
    try:
        _expect("RSS daemon", _count(session), n)
    finally:
        session.close_session()
    growth = round(readings["after_20_sessions_mb"] - readings["after_10_sessions_mb"], 1)
    return {**readings, "sessions": SESSIONS, "growth_10_to_20_mb": growth,
            "growing": growth > FLAT_RSS_MB}
