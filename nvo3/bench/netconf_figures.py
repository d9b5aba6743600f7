"""The figures of `nvo3 bench netconf`, each beside Netopeer2's and the goal of issue 12.

Netopeer2 2.4.5 was measured on this machine kind with the same client
(:mod:`nvo3.bench.reference_client`), medians of 3 rounds of one run; the one-entry edit
p50 with N entries present from a separate run of the same client (N = 0 and 10,000; no
figure at 100,000). A goal is an upper bound (``None``: the figure has no goal); the RSS
goal also asks that RSS stops growing with sessions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Netopeer2 2.4.5 with the same client on this machine kind (None: not measured).
#: Keys name the figure and, after "@", the number of entries it was measured with.
NETOPEER2: dict[str, float] = {
    "get_config_p50_ms": 4.50, "edits_1000_s": 3.47, "bulk_edit_s@10000": 0.193,
    "bulk_get_config_s@10000": 0.035, "delete_list_s@10000": 0.043, "rss_mb@10000": 44.9,
    "edit_p50_ms@0": 2.50, "edit_p50_ms@10000": 25.7,
}

#: Growth of RSS between the 10th and the 20th session up to which RSS counts as flat (MB).
FLAT_RSS_MB = 1.0

#: Issue 12's goals (upper bounds), keyed as NETOPEER2.
GOALS: dict[str, float] = {
    "edit_p50_ms@10000": 5.0, "edit_p50_ms@100000": 5.0, "edits_1000_s": 3.0,
    "delete_list_s@10000": 0.043, "bulk_get_config_s@10000": 0.035, "rss_mb@10000": 60.0,
    "rss_growth_mb@10000": FLAT_RSS_MB,
}


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its reference and goal."""

    key: str
    label: str
    unit: str
    nvo3: float
    netopeer2: float | None
    goal: float | None

    @property
    def met(self) -> bool | None:
        """Whether the figure is within its goal (None: no goal)."""
        return None if self.goal is None else self.nvo3 <= self.goal

    def as_dict(self) -> dict[str, Any]:
        """The figure as JSON-ready data (with `met`)."""
        return {**asdict(self), "met": self.met}


def figure(key: str, label: str, unit: str, value: float) -> Figure:
    """A figure with the Netopeer2 reference and the goal recorded under `key`."""
    return Figure(key, label, unit, value, NETOPEER2.get(key), GOALS.get(key))


def figures(r: dict[str, Any]) -> list[Figure]:
    """Every figure of a :func:`nvo3.bench.netconf.run_bench` result, in print order."""
    n = r["entries"]
    rows = [figure("get_config_p50_ms", "get-config round trip, p50", "ms",
                   r["get_config_p50_ms"])]
    for loaded in r["loaded_edits"]:
        size = loaded["entries"]
        rows.append(figure(f"edit_p50_ms@{size}", f"one-entry edit p50, {size:,} present",
                           "ms", loaded["p50_ms"]))
        rows.append(figure(f"edit_p95_ms@{size}", f"one-entry edit p95, {size:,} present",
                           "ms", loaded["p95_ms"]))
    rss = r["rss"]
    rows += [figure("edits_1000_s", "1,000 one-entry edits from empty", "s",
                    r["edits_1000_s"]),
             figure(f"bulk_edit_s@{n}", f"one edit-config of {n:,} entries", "s",
                    r["bulk_edit_s"]),
             figure(f"bulk_get_config_s@{n}", f"get-config of {n:,} entries", "s",
                    r["bulk_get_config_s"]),
             figure(f"delete_list_s@{n}", f"delete a {n:,}-entry list in one edit", "s",
                    r["delete_list_s"]),
             figure(f"rss_mb@{n}", f"RSS, {n:,} entries, after 20 sessions",
                    "MB", rss["after_20_sessions_mb"]),
             figure(f"rss_growth_mb@{n}", "RSS growth from session 10 to 20", "MB",
                    rss["growth_10_to_20_mb"])]
    return rows


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return f"{'-':>11}"
    return f"{value:>8.3f} {unit:<2}" if unit != "MB" else f"{value:>8.1f} {unit:<2}"


def print_figures(r: dict[str, Any]) -> None:
    """The readable table: each figure, Netopeer2's, the ratio, the goal and whether it is met."""
    print(f"nvo3 NETCONF engine, store-only NVE agent; client: {r['client']}")
    print(f"{'figure':44} {'nvo3':>11} {'Netopeer2':>11} {'ratio':>7} {'goal':>16}")
    for f in figures(r):
        ratio = f"{f.nvo3 / f.netopeer2:>6.2f}x" if f.netopeer2 else f"{'-':>7}"
        goal = "" if f.goal is None else f"<= {f.goal:g} {f.unit} {'met' if f.met else 'MISSED'}"
        print(f"{f.label:44} {_number(f.nvo3, f.unit)} {_number(f.netopeer2, f.unit)} "
              f"{ratio} {goal:>16}")
    rss = r["rss"]
    print(f"RSS of a fresh daemon: idle {rss['idle_mb']:.1f} MB, {r['entries']:,} entries "
          f"{rss['loaded_mb']:.1f} MB, after 10 sessions {rss['after_10_sessions_mb']:.1f} MB, "
          f"after 20 {rss['after_20_sessions_mb']:.1f} MB: "
          f"{'still growing' if rss['growing'] else 'flat'}")
    loads = ", ".join(f"{x['entries']:,} in {x['load_s']:.3f} s" for x in r["loaded_edits"]
                      if x["entries"])
    print(f"loaded in one edit-config before the one-entry edits: {loads}")
