"""nvo3.observability.metrics and .http on the real engine in memory: counters move with RPCs,
the exposition parses with prometheus_client's own parser, /healthz says why it is not ready."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1] / "netconf/server"))
from engine_harness import NS, Client, make_server, ok

from nvo3.observability.address import MetricsAddress
from nvo3.observability.health import Health
from nvo3.observability.http import MetricsServer
from nvo3.observability.metrics import DaemonMetrics, vcenter_kind


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def engine(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


def test_rpcs_sessions_datastore_and_applies_are_counted(engine):
    metrics = DaemonMetrics(engine)
    engine.observer = metrics
    c = Client(engine)
    for i in range(3):
        assert ok(c.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                        f"<item><id>{i + 1}</id></item></top></config></edit-config>"))
    c.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
          "<name>refuse</name></top></config></edit-config>")
    c.rpc("<get-config><source><nosuch/></source></get-config>")
    got = samples(generate_latest(metrics.registry).decode())
    assert got[("nvo3_netconf_rpcs_total", (("operation", "edit-config"), ("outcome", "ok")))] == 3
    assert got[("nvo3_netconf_rpcs_total",
                (("operation", "edit-config"), ("outcome", "operation-failed")))] == 1
    assert got[("nvo3_netconf_rpcs_total",
                (("operation", "get-config"), ("outcome", "invalid-value")))] == 1
    assert got[("nvo3_netconf_rpc_duration_seconds_count", (("operation", "edit-config"),))] == 4
    assert got[("nvo3_netconf_sessions_open", ())] == 1
    assert got[("nvo3_role_apply_duration_seconds_count", ())] == 4     # 3 taken, 1 refused
    assert got[("nvo3_role_apply_failures_total", (("error_tag", "operation-failed"),))] == 1
    assert got[("nvo3_datastore_running_bytes", ())] == len(engine.datastores.running.xml())
    assert got[("nvo3_datastore_running_nodes", ())] == 7     # top, 3 x (item, id)
    c.close()
    got = samples(generate_latest(metrics.registry).decode())
    assert got[("nvo3_netconf_sessions_open", ())] == 0
    assert got[("nvo3_netconf_sessions_total", ())] == 1


def test_vcenter_kinds():
    assert [vcenter_kind(n) for n in ("create-vm", "terminate-vm", "relocate-vm",
                                      "replicate-vm", "modify-vm", "bulk-register-vms")] == \
        ["create", "delete", "relocate", "replicate", "modify", "bulk-register"]


@pytest.mark.parametrize(("text", "host", "port"), [
    ("9100", "127.0.0.1", 9100), (":9100", "127.0.0.1", 9100),
    ("0.0.0.0:9100", "0.0.0.0", 9100), ("[::1]:9100", "::1", 9100)])
def test_metrics_address(text, host, port):
    assert MetricsAddress.parse(text) == MetricsAddress(host, port)


@pytest.mark.parametrize("text", ["", "abc", "host:", "1:99999", "[::1]"])
def test_bad_metrics_address_is_named(text):
    with pytest.raises(ValueError, match="bad --metrics"):
        MetricsAddress.parse(text)


def test_healthz_and_metrics_over_http(engine):
    metrics = DaemonMetrics(engine)
    state = {"applied": False, "accepting": True}
    server = MetricsServer(MetricsAddress("127.0.0.1", 0), metrics.registry,
                           Health(lambda: state["applied"], lambda: state["accepting"]))
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert err.value.code == 503 and b"not applied" in err.value.read()
        state["applied"] = True
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as reply:
            assert reply.status == 200
        state["accepting"] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert err.value.code == 503 and b"listener" in err.value.read()
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain")
            names = {f.name for f in text_string_to_metric_families(reply.read().decode())}
        assert {"nvo3_daemon_info", "nvo3_netconf_rpcs", "nvo3_datastore_running_bytes"} <= names
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/other", timeout=5)
        assert err.value.code == 404
    finally:
        server.stop()
