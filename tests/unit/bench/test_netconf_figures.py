"""The table of `nvo3 bench netconf`: each figure beside Netopeer2's and issue 12's goal."""

from __future__ import annotations

from typing import Any

import pytest

from nvo3.bench.netconf_figures import figures, print_figures


def result(entries: int = 10_000) -> dict[str, Any]:
    return {"entries": entries, "client": "ncclient", "get_config_p50_ms": 1.5,
            "edits_1000_s": 2.4, "bulk_edit_s": 0.19, "bulk_get_config_s": 0.046,
            "delete_list_s": 0.15,
            "loaded_edits": [{"entries": n, "load_s": n / 1e5, "p50_ms": 2.0, "p95_ms": 6.0}
                             for n in (0, entries, 10 * entries)],
            "rss": {"idle_mb": 46.0, "loaded_mb": 70.0, "after_10_sessions_mb": 121.5,
                    "after_20_sessions_mb": 135.0, "growth_10_to_20_mb": 13.5,
                    "growing": True}}


def test_every_goal_of_the_issue_is_beside_its_figure() -> None:
    rows = {f.key: f for f in figures(result())}
    goals = {k: (f.goal, f.met) for k, f in rows.items() if f.goal is not None}
    assert goals == {"edit_p50_ms@10000": (5.0, True), "edit_p50_ms@100000": (5.0, True),
                     "edits_1000_s": (3.0, True), "bulk_get_config_s@10000": (0.035, False),
                     "delete_list_s@10000": (0.043, False), "rss_mb@10000": (60.0, False),
                     "rss_growth_mb@10000": (1.0, False)}
    assert rows["edit_p50_ms@10000"].netopeer2 == 25.7
    assert rows["edit_p50_ms@100000"].netopeer2 is None


def test_references_and_goals_only_at_the_size_they_were_measured_with() -> None:
    rows = figures(result(100))
    keyed = {f.key for f in rows if f.netopeer2 is not None or f.goal is not None}
    assert keyed == {"get_config_p50_ms", "edits_1000_s", "edit_p50_ms@0"}


def test_table_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    print_figures(result())
    out = capsys.readouterr().out
    for f in figures(result()):
        assert f.label in out
    assert "MISSED" in out and "still growing" in out
