"""Metrics, /healthz, the audit trail and JSON logs of real daemons (`nvo3 serve --metrics`),
reached over real SSH and HTTP; the exposition is read with prometheus_client's own parser."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from nvo3.launcher import RoleProcess, start_role

ND = "urn:nvo3:yang:nvo3-ndirector"
SECRET = "Peer-Pa55word-never-logged"


def scrape(d: RoleProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert d.metrics is not None
    with urllib.request.urlopen(f"http://{d.metrics}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def nve_entry(name: str, port: int, vtep: str) -> str:
    return (f"<nve><name>{name}</name><address>127.0.0.1</address><port>{port}</port>"
            f"<username>nd</username><password>{SECRET}</password>"
            f"<vtep-address>{vtep}</vtep-address></nve>")


def test_ndirector_metrics_health_audit_and_json_logs(tmp_path: Path) -> None:
    log_file = tmp_path / "nd.jsonl"
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))           # an NVE address nobody answers on
    dead_port = unused.getsockname()[1]
    unused.close()
    d = start_role("ndirector", tmp_path / "nd", extra_args=("--metrics", "127.0.0.1:0"),
                   global_args=("--log-format", "json", "--log-file", str(log_file)))
    try:
        assert d.metrics is not None and d.metrics.startswith("127.0.0.1:")
        with urllib.request.urlopen(f"http://{d.metrics}/healthz", timeout=10) as reply:
            assert reply.status == 200 and reply.read().startswith(b"ok")
        before = scrape(d)
        nves = nve_entry("nve-a", dead_port, "198.18.0.1")
        edit = f'<config><ndirector xmlns="{ND}"><nves>{nves}</nves></ndirector></config>'
        with d.connect() as c:
            c.edit_config(edit, target="running")
            c.get_config(source="running")
        time.sleep(0.5)           # the session's close reaches the engine after the reply
        after = scrape(d)
        ok_edit = ("nvo3_netconf_rpcs_total", (("operation", "edit-config"), ("outcome", "ok")))
        assert before.get(ok_edit, 0) == 0 and after[ok_edit] == 1
        assert after[("nvo3_netconf_sessions_total", ())] == \
            before[("nvo3_netconf_sessions_total", ())] + 1
        assert after[("nvo3_netconf_sessions_open", ())] == 0
        assert after[("nvo3_datastore_running_bytes", ())] > 0
        assert after[("nvo3_role_apply_duration_seconds_count", ())] == 1   # the edit
        state = {lb: v for (n, lb), v in after.items() if n == "nvo3_ndirector_nve_session_state"}
        assert sum(state.values()) == 1                 # one NVE, in exactly one state
        assert after[("nvo3_ndirector_mappings", ())] == 0
    finally:
        d.stop()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    audit = [r for r in records if r["logger"] == "nvo3.audit"]
    assert len(audit) == 1, audit                   # the edit; get-config is not audited
    (a,) = audit
    assert (a["user"], a["peer"], a["operation"], a["target"], a["result"]) == \
        (d.username, "127.0.0.1", "edit-config", "running", "ok")
    assert isinstance(a["session"], int)
    assert "/nvo3-ndirector:ndirector/nves" in a["summary"]
    everything = log_file.read_text() + (tmp_path / "nd" / "daemon.log").read_text()
    assert SECRET not in everything


def test_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    state = tmp_path / "nve"
    state.mkdir()
    try:
        out = subprocess.run([sys.executable, "-m", "nvo3.cli", "serve", "nve", "--store-only",
                              "--listen", "127.0.0.1:0", "--state-dir", str(state),
                              "--metrics", str(port)], capture_output=True, text=True,
                             timeout=60)
    finally:
        busy.close()
    assert out.returncode == 2
    assert f"metrics 127.0.0.1 port {port}" in out.stderr and "in use" in out.stderr


def test_bad_metrics_address_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "nvo3.cli", "serve", "nve", "--store-only",
                          "--state-dir", str(tmp_path), "--metrics", "host:notaport"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "bad --metrics 'host:notaport'" in out.stderr


def test_log_file_text_and_json_for_any_command(tmp_path: Path) -> None:
    for fmt in ("text", "json"):
        log = tmp_path / f"cli-{fmt}.log"
        out = subprocess.run([sys.executable, "-m", "nvo3.cli", "--log-file", str(log),
                              "--log-format", fmt, "user", "add", "ops", "--state-dir",
                              str(tmp_path / fmt)], input="pw-for-ops\n", capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""                     # the records went to the file
        lines = log.read_text().splitlines()
        assert any("user ops stored" in ln for ln in lines)
        assert "pw-for-ops" not in log.read_text()
        if fmt == "json":
            rec = json.loads(lines[-1])
            assert rec["logger"] == "nvo3.netconf.ssh.users" and rec["level"] == "INFO"
            assert rec["ts"].endswith("Z")
        else:
            assert " INFO nvo3.netconf.ssh.users: user ops stored" in lines[-1]


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    d = start_role("nve", tmp_path / "nve", extra_args=("--store-only",))
    try:
        assert d.metrics is None                     # no "metrics" on the ready line
        with d.connect() as c:
            c.get_config(source="running")
    finally:
        d.stop()
    log = (tmp_path / "nve" / "daemon.log").read_text()
    assert "nvo3-metrics" not in log and "/metrics" not in log
