"""`nvo3 bench netconf --json` with small sizes: every figure of issue 12's goals table is in
the JSON document, which is alone on stdout. Figures only: no time or size is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

ENTRIES = 100


def test_bench_netconf_json_has_every_figure() -> None:
    out = subprocess.run([sys.executable, "-m", "nvo3.cli", "--log-level", "WARNING", "bench",
                          "netconf", "--json", "--entries", str(ENTRIES)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)          # stdout is the JSON document and nothing else
    assert result["entries"] == ENTRIES
    for key in ("get_config_p50_ms", "edits_1000_s", "bulk_edit_s", "bulk_get_config_s",
                "delete_list_s", "rss_mb"):
        assert isinstance(result[key], float), key
    assert [x["entries"] for x in result["loaded_edits"]] == [0, ENTRIES, 10 * ENTRIES]
    for loaded in result["loaded_edits"]:
        assert {"load_s", "p50_ms", "p95_ms"} <= loaded.keys()
    assert {"idle_mb", "loaded_mb", "after_10_sessions_mb", "after_20_sessions_mb",
            "growth_10_to_20_mb", "growing"} <= result["rss"].keys()
    keys = {f["key"] for f in result["figures"]}
    sizes = (0, ENTRIES, 10 * ENTRIES)
    assert keys >= {*(f"edit_p50_ms@{n}" for n in sizes), *(f"edit_p95_ms@{n}" for n in sizes),
                    "edits_1000_s", f"delete_list_s@{ENTRIES}",
                    f"bulk_get_config_s@{ENTRIES}", f"rss_mb@{ENTRIES}",
                    f"rss_growth_mb@{ENTRIES}"}
    for f in result["figures"]:
        assert {"label", "unit", "nvo3", "netopeer2", "goal", "met"} <= f.keys()
    # the readable table went to stderr, beside the progress lines
    assert "one-entry edit p50" in out.stderr and "Netopeer2" in out.stderr
