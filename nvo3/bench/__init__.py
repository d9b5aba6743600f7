"""Benchmarks behind `nvo3 bench`: each module's `run_bench(...)` prints its figures and
returns them (a dict; `migration`, which brings up a whole lab, returns the exit code)."""

from __future__ import annotations

from typing import Any

#: The benchmarks `run_named` runs (`migration` is run by its own module's run_bench).
NAMES = ("netconf", "nve", "fdb", "convergence")


def run_named(what: str, entries: int = 10_000) -> dict[str, Any]:
    """Run the benchmark `what` (one of NAMES); its figures."""
    if what == "netconf":
        from nvo3.bench import netconf
        return netconf.run_bench(entries)
    if what == "nve":
        from nvo3.bench import nve_bulk
        return nve_bulk.run_bench(entries)
    if what == "fdb":
        from nvo3.bench import fdb
        result = fdb.run_bench(entries)
        print(f"{entries} FDB entries, kernel layer only: bridge -batch "
              f"{result['bridge_batch_s']:.3f} s, nvo3 {result['nvo3_s']:.3f} s, "
              f"ratio {result['ratio']:.2f}")
        return result
    if what == "convergence":
        from nvo3.bench import convergence, convergence_etcd
        return {**convergence.run_bench(), **convergence_etcd.run_bench()}
    raise ValueError(f"unknown benchmark {what!r}")
