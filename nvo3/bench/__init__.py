"""Benchmarks behind `nvo3 bench`: each prints its figures and returns them as a dict."""

from __future__ import annotations

from typing import Any


def run_bench(what: str, entries: int = 10_000) -> dict[str, Any]:
    if what == "netconf":
        from nvo3.bench.netconf import run
        return run(entries)
    if what == "nve":
        from nvo3.bench.nve_bulk import run_nve_bench
        return run_nve_bench(entries)
    if what == "fdb":
        from nvo3.bench.fdb import run_fdb_benchmark
        result = run_fdb_benchmark(entries)
        print(f"{entries} FDB entries, kernel layer only: bridge -batch "
              f"{result['bridge_batch_s']:.3f} s, nvo3 {result['nvo3_s']:.3f} s, "
              f"ratio {result['ratio']:.2f}")
        return result
    if what == "convergence":
        from nvo3.bench.convergence import run as run_convergence
        return run_convergence()
    raise ValueError(f"unknown benchmark {what!r}")
