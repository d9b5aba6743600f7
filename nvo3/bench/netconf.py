"""`nvo3 bench netconf`: the engine's speed over one real NETCONF/SSH session.

Starts an NVE agent daemon with --store-only (its own process, loopback, a temporary state
directory; configuration is validated and persisted, the kernel is not touched), then
measures over one session of nvo3's client: get-config round trip (p50 of 200), 1,000
one-entry edit-configs, one edit-config of N list entries, get-config of those N entries, and
the server's RSS. The reference is Netopeer2 2.4.5 measured on this machine kind (design
brief); it is printed beside each figure with the ratio.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nvo3.common.names import NVE_NS
from nvo3.launcher import start_role

#: Netopeer2 2.4.5 on this machine kind, one ncclient session with a 1 ms tick.
NETOPEER2 = {"get_config_p50_ms": 2.9, "edits_1000_s": 3.9, "bulk_edit_s": 0.24,
             "bulk_get_config_s": 0.073, "rss_mb": 50.0}


def _mac(i: int) -> str:
    return (f"02:{0x10 + (i >> 32 & 0xff):02x}:{i >> 24 & 0xff:02x}:{i >> 16 & 0xff:02x}:"
            f"{i >> 8 & 0xff:02x}:{i & 0xff:02x}")


def _network(vni: int, macs: str = "") -> str:
    return (f'<config><nve xmlns="{NVE_NS}"><local-vtep-address>198.18.0.1</local-vtep-address>'
            f"<networks><network><vni>{vni}</vni><remote-macs>{macs}</remote-macs></network>"
            "</networks></nve></config>")


def _remote_mac(i: int) -> str:
    return (f"<remote-mac><mac>{_mac(i)}</mac><remote-vtep>198.18.{1 + (i >> 8) % 200}."
            f"{1 + i % 250}</remote-vtep></remote-mac>")


def _progress(label: str) -> None:
    print(f"  {label} ...", end="", flush=True, file=sys.stderr)


def run_bench(entries: int = 10_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nvo3-bench-") as tmp:
        # the engine alone: the NVE's modules, no kernel programming behind them
        daemon = start_role("nve", Path(tmp), extra_args=("--store-only",))
        try:
            with daemon.connect() as client:
                result = _measure(client, daemon, entries)
        finally:
            daemon.stop()
    _print(result)
    return result


def _measure(client: Any, daemon: Any, entries: int) -> dict[str, Any]:
    client.edit_config(_network(10010), target="running")
    _progress("get-config round trips")
    rtts = []
    for _ in range(200):
        t0 = time.perf_counter()
        client.get_config()
        rtts.append(time.perf_counter() - t0)
    print(" done", file=sys.stderr)

    _progress("1,000 one-entry edit-configs")
    t0 = time.perf_counter()
    for i in range(1000):
        client.edit_config(_network(10010, _remote_mac(i)), target="running")
    edits_s = time.perf_counter() - t0
    print(" done", file=sys.stderr)

    _progress(f"one edit-config of {entries:,} entries")
    bulk = _network(10020, "".join(_remote_mac(100_000 + i) for i in range(entries)))
    t0 = time.perf_counter()
    client.edit_config(bulk, target="running")
    bulk_s = time.perf_counter() - t0
    print(" done", file=sys.stderr)

    _progress(f"get-config of {entries:,} entries")
    flt = (f'<nve xmlns="{NVE_NS}"><networks><network><vni>10020</vni></network></networks>'
           "</nve>")
    t0 = time.perf_counter()
    data = client.get_config(filter=("subtree", flt))
    get_s = time.perf_counter() - t0
    got = len(data.findall(f".//{{{NVE_NS}}}remote-mac"))
    print(" done", file=sys.stderr)
    if got != entries:
        raise RuntimeError(f"get-config returned {got} entries, expected {entries}")
    return {"entries": entries,
            "get_config_p50_ms": round(statistics.median(rtts) * 1000, 3),
            "edits_1000_s": round(edits_s, 3),
            "bulk_edit_s": round(bulk_s, 3),
            "bulk_get_config_s": round(get_s, 3),
            "rss_mb": round(daemon.rss_bytes() / 2**20, 1),
            "reference": {"name": "Netopeer2 2.4.5 (recorded on this machine kind)",
                          **NETOPEER2}}


def _print(r: dict[str, Any]) -> None:
    ref = r["reference"]
    rows = [("get-config round trip, p50", r["get_config_p50_ms"], ref["get_config_p50_ms"],
             "ms"),
            ("1,000 one-entry edit-configs", r["edits_1000_s"], ref["edits_1000_s"], "s"),
            (f"one edit-config of {r['entries']:,} entries", r["bulk_edit_s"],
             ref["bulk_edit_s"], "s"),
            (f"get-config of {r['entries']:,} entries", r["bulk_get_config_s"],
             ref["bulk_get_config_s"], "s"),
            ("server RSS", r["rss_mb"], ref["rss_mb"], "MB")]
    print(f"{'nvo3 NETCONF engine':40} {'nvo3':>10} {'Netopeer2':>10} {'ratio':>7}")
    for label, ours, theirs, unit in rows:
        print(f"{label:40} {ours:>8.3f}{unit:>2} {theirs:>8.3f}{unit:>2} "
              f"{ours / theirs:>6.2f}x")
