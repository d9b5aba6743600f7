"""`nvo3 bench migration [--json]`: data-plane loss per VM move, against FRR's BGP EVPN figure.

A lab of its own (default topology, prefix `nvo3bench`, private state file; taken down at
the end, also on failure or Ctrl-C). vm9 (dc2) sends vm1 a UDP datagram every millisecond
(nvo3.lab.probe) while the root vCenter moves vm1 back and forth between vserver1 (dc1) and
vserver3 (dc2): `moves` relocate-vm calls, then a few replicate-vm with terminate-source
(the draft's VM replication: the copy runs at the destination before the source stops).
Loss per move = datagrams sent from the call until 0.5 s after its reply that never
arrived, in ms. The nDirector's duplicate-MAC detection (5 moves in 180 s freezes the MAC by
default) is switched off for the run: 20 legitimate moves in a minute are the point here.

Figures: p50/p95/max loss per relocation, loss per replication move, the vCenter's call
times, and a PNG timeline (probe sequence against time, moves shaded).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nvo3.common import names
from nvo3.lab import federation, probe
from nvo3.lab.lab import ROOT_VCENTER, down, session, up, vm_namespace
from nvo3.lab.use_cases import Demo
from nvo3.roles.peers import codec as peer

FRR_ANCHOR_MS = 66.0       # BGP EVPN (FRR 8.4.4), this machine kind, 1 ms UDP probe, median
GOAL_P50_MS = 20.0
GOAL_REPLICATION_MS = 0.0
SETTLE_S = 0.5
PORT = 7098
PREFIX = "nvo3bench"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _timeline(path: Path, received: dict[int, float], t0: float, moves: list[dict[str, Any]],
              sent: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seqs = sorted(received)
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    ax.plot([received[s] - t0 for s in seqs], seqs, ",", color="tab:blue",
            label=f"received ({len(seqs)} of {sent})")
    lost = [s for s in range(sent) if s not in received]
    if lost:
        ax.plot([s / 1000 for s in lost], lost, "x", color="tab:red", markersize=3,
                label=f"lost ({len(lost)})")
    for m in moves:
        color = "tab:orange" if m["kind"] == "relocate" else "tab:green"
        ax.axvspan(m["start"] - t0, m["end"] - t0, color=color, alpha=0.25)
        ax.annotate(f"{m['loss_ms']:.0f}", (m["end"] - t0, 0), fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    ax.plot([], [], color="tab:orange", alpha=0.4, linewidth=8, label="relocate-vm")
    ax.plot([], [], color="tab:green", alpha=0.4, linewidth=8,
            label="replicate-vm (terminate source)")
    ax.set_xlabel("time since the probe started (s)")
    ax.set_ylabel("probe sequence number (1 ms apart)")
    ax.set_title("vm9 -> vm1 UDP probe while vm1 moves between dc1 and dc2 "
                 "(numbers: ms lost per move)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _move(d: Demo, c: Any, kind: str, dst: str) -> tuple[float, float, dict[str, Any]]:
    given: dict[str, Any] = {"tenant": "alice", "name": "vm1", "destination-vserver": dst}
    if kind == "replicate":
        given["terminate-source"] = True
    t0 = time.monotonic()
    reply = peer.call(c, "nvo3-vcenter", f"{kind}-vm", given)
    return t0, time.monotonic(), dict(reply)


def measure(d: Demo, moves: int = 20, replications: int = 4,
            png: Path | None = None) -> dict[str, Any]:
    """Run the moves on a lab with vm1 and vm9 up; the figures."""
    vm1, vm9 = d.topo.vm("vm1"), d.topo.vm("vm9")
    homes = ("vserver3", "vserver1")
    with session(federation.leading_director(d.state)) as c:
        peer.merge_config(c, names.NDIRECTOR, {"ndirector": {
            "duplicate-mac-detection": {"enabled": False}}})
    rx = probe.Receiver(vm_namespace(d.state.prefix, "*", vm1.tenant, vm1.name), PORT).start()
    tx = probe.start_sender(d.ns_of(vm9, d.topo.host(vm9.host).vserver), vm1.ip, PORT, 1.0,
                            600.0)
    done: list[dict[str, Any]] = []
    try:
        if not _wait(lambda: len(rx.received) > 300, 5.0):
            raise RuntimeError("the probe does not reach vm1 before any move")
        with session(d.state.daemon(ROOT_VCENTER)) as c:
            plan = [("relocate", homes[i % 2]) for i in range(moves)]
            at = homes[(moves - 1) % 2]
            for _ in range(replications):
                at = homes[0] if at == homes[1] else homes[1]
                plan.append(("replicate", at))
            for n, (kind, dst) in enumerate(plan, 1):
                start, end, reply = _move(d, c, kind, dst)
                time.sleep(SETTLE_S)
                done.append({"n": n, "kind": kind, "to": dst, "start": start, "end": end,
                             "call_ms": round((end - start) * 1000, 1),
                             "vcenter_duration_ms": reply.get("duration")})
                print(f"  move {n:2}/{len(plan)}: {kind}-vm vm1 -> {dst}: "
                      f"{(end - start) * 1000:.0f} ms", flush=True)
        sent = probe.stop_sender(tx)
    finally:
        if tx.poll() is None:
            tx.kill()
            tx.wait(5)
        rx.stop()
    t0, interval = sent["t0"], sent["interval"]
    for m in done:
        m["loss_ms"] = probe.lost_between(rx.received, t0, interval, m["start"],
                                          m["end"] + SETTLE_S) * interval * 1000
    reloc = [m["loss_ms"] for m in done if m["kind"] == "relocate"]
    repl = [m["loss_ms"] for m in done if m["kind"] == "replicate"]
    result: dict[str, Any] = {
        "relocations": len(reloc), "replications": len(repl),
        "probe_interval_ms": interval * 1000, "probe_sent": int(sent["sent"]),
        "probe_received": len(rx.received),
        "relocation_loss_ms": {"p50": _percentile(reloc, 0.5), "p95": _percentile(reloc, 0.95),
                               "max": max(reloc, default=0.0),
                               "mean": round(statistics.fmean(reloc), 2) if reloc else None},
        "replication_loss_ms": repl,
        "relocate_call_ms": {"p50": _percentile([m["call_ms"] for m in done
                                                 if m["kind"] == "relocate"], 0.5),
                             "max": max((m["call_ms"] for m in done), default=0.0)},
        "frr_anchor_ms": FRR_ANCHOR_MS, "goal_p50_ms": GOAL_P50_MS,
        "goal_replication_ms": GOAL_REPLICATION_MS,
        "moves": [{k: v for k, v in m.items() if k not in ("start", "end")} for m in done]}
    result["goal_p50_met"] = result["relocation_loss_ms"]["p50"] <= GOAL_P50_MS
    result["goal_replication_met"] = all(x <= GOAL_REPLICATION_MS for x in repl)
    if png is not None:
        try:
            _timeline(png, rx.received, t0, done, int(sent["sent"]))
            result["timeline_png"] = str(png.resolve())
        except ImportError:
            result["timeline_png"] = None
            result["timeline_error"] = "matplotlib is not installed"
    return result


def _wait(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run_bench(json_output: bool = False, moves: int = 20,
                        png: Path = Path("migration-timeline.png")) -> int:
    if logging.getLogger().level == logging.INFO:
        logging.getLogger().setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="nvo3-bench-"))
    path = tmp / "lab.json"
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # with --json, stdout is the JSON alone: the progress lines go to stderr
        with contextlib.redirect_stdout(sys.stderr) if json_output else contextlib.nullcontext():
            print("bench migration: bringing up the two-DC lab", flush=True)
            up(None, path, prefix=PREFIX)
            result = measure(Demo.from_state(path, quiet=True), moves=moves, png=png)
    except KeyboardInterrupt:
        print("\ninterrupted: taking the lab down", file=sys.stderr)
        return 130
    finally:
        down(path, prefix=PREFIX)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    if json_output:
        print(json.dumps(result, indent=2))
        return 0
    r, c = result["relocation_loss_ms"], result["relocate_call_ms"]
    print(f"\n{result['relocations']} relocations of vm1 between dc1 and dc2 (relocate-vm at "
          f"the root vCenter), 1 ms UDP probe vm9 -> vm1:")
    print(f"  loss per move: p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, max {r['max']:.0f} ms"
          f"   (goal p50 <= {GOAL_P50_MS:.0f} ms: "
          f"{'met' if result['goal_p50_met'] else 'NOT met'})")
    print(f"  relocate-vm call: p50 {c['p50']:.0f} ms, max {c['max']:.0f} ms")
    print(f"  replication moves (replicate-vm, terminate-source): loss "
          f"{', '.join(f'{x:.0f}' for x in result['replication_loss_ms'])} ms   (goal 0 ms: "
          f"{'met' if result['goal_replication_met'] else 'NOT met'})")
    print(f"  anchor: BGP EVPN (FRR 8.4.4) on this machine kind lost {FRR_ANCHOR_MS:.0f} ms per "
          "move (median of 10); the draft: over 400 ms is noticed")
    print(f"  probe: {result['probe_received']} of {result['probe_sent']} datagrams received")
    print(f"  timeline: {result.get('timeline_png') or result.get('timeline_error')}")
    return 0
