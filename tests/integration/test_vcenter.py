"""The vCenter daemon as its own process, over real SSH: what it does on its own.

The vServers named in its configuration are not running here (their management address is a
port with no listener), so these tests show registration, unregistration, bulk operations,
reports, lookups, placement decisions, refusals and crash recovery. Creation, relocation and
replication carried out on real vServer agents are end-to-end tests in tests/netns.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client.session import Client, RemoteRpcError
from nvo3.roles.peers import codec as peer

VC = "nvo3-vcenter"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening), for the whole test."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def config(dead_port: int) -> dict[str, Any]:
    vserver = {"address": "127.0.0.1", "port": dead_port, "username": "vcenter",
               "password": "not-used", "data-center": "dc1"}
    return {"vcenter": {
        "name": "vcenter-dc1", "data-center": ["dc1"],
        "tenants": {"tenant": [
            {"name": "alice", "vnid": 10010,
             "vm-group": [{"name": "web", "profile": {"vlan": 100,
                                                      "resources": {"vcpus": 2}}}],
             "vm": [{"name": "vm1", "vm-group": "web", "mac-address": "02:00:00:00:01:01",
                     "ip-address": ["198.19.10.1"]}]},
            {"name": "bob", "vnid": 20020}]},
        "vservers": {"vserver": [{"name": "vs1", "nve": "nve1", **vserver},
                                 {"name": "vs2", "nve": "nve2", **vserver}]}}}


@pytest.fixture
def vcenter(tmp_path: Path, dead_port: int) -> Iterator[RoleProcess]:
    state = tmp_path / "vc"
    state.mkdir()
    proc = start_role("vcenter", state)
    try:
        with proc.connect() as c:
            peer.merge_config(c, VC, config(dead_port))
        yield proc
    finally:
        proc.stop(timeout=5)


@pytest.fixture
def client(vcenter: RoleProcess) -> Iterator[Client]:
    with vcenter.connect() as c:
        yield c


def call(c: Client, rpc: str, **given: Any) -> dict[str, Any]:
    return peer.call(c, VC, rpc, {k.replace("_", "-"): v for k, v in given.items()})


def lookup(c: Client, **key: Any) -> list[dict[str, Any]]:
    return list(call(c, "lookup-vm", **key).get("vm") or [])


def notifications(c: Client, name: str, count: int, timeout: float = 5.0) -> list[dict]:
    """The next `count` notifications called `name` (others are skipped)."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            parsed = peer.notification(c.notifications.get(timeout=0.2))
            if parsed is not None and parsed[1] == name:
                found.append(parsed[2])
    return found


def vcenter_state(c: Client) -> dict[str, Any]:
    return peer.get_state(c, VC, "vcenter")


def vms_of(state: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["name"], v["name"]): v for t in state.get("tenants", {}).get("tenant", [])
            for v in t.get("vm") or []}


# registration ---------------------------------------------------------------------------------
def test_register_lookup_unregister(client: Client) -> None:
    """VM registration creates the profile; lookup/discovery by name, MAC and IP answers
    which vServer hosts it; unregistration removes it."""
    out = call(client, "register-vm", vserver="vs1", tenant="alice", name="vm2",
               mac_address="02:00:00:00:01:02", ip_address=["198.19.10.2"], vm_group="web",
               nve="nve1")
    assert out == {"result": "ok", "created": True, "vcenter": "vcenter-dc1", "vnid": 10010,
                   "vlan": 100, "vm-group": "web"}
    for key in ({"tenant": "alice", "name": "vm2"}, {"mac_address": "02:00:00:00:01:02"},
                {"ip_address": "198.19.10.2"}):
        (row,) = lookup(client, **key)
        assert (row["name"], row["vserver"], row["nve"], row["vnid"], row["data-center"]) == \
            ("vm2", "vs1", "nve1", 10010, "dc1")
    vm = vms_of(vcenter_state(client))[("alice", "vm2")]
    assert vm["registered"] is True and vm["location"]["vserver"] == "vs1"
    # a registration of the configured vm1 updates its location, keeps its configured items
    out = call(client, "register-vm", vserver="vs2", tenant="alice", name="vm1",
               mac_address="02:00:00:00:01:01", vlan=999)
    assert out["created"] is False and out["vlan"] == 100
    assert call(client, "unregister-vm", vserver="vs1", tenant="alice", name="vm2",
                mac_address="02:00:00:00:01:02") == {"result": "ok"}
    assert lookup(client, tenant="alice", name="vm2") == []
    assert lookup(client, tenant="alice", name="vm1")[0]["vserver"] == "vs2"


def test_unknown_vm_unregistration_answers_and_alerts(client: Client) -> None:
    """The draft: an unregistration of an unknown VM raises an alert to the vServer."""
    client.create_subscription()
    out = call(client, "unregister-vm", vserver="vs1", tenant="alice", name="ghost")
    assert out["result"] == "unknown-vm" and "ghost" in out["error-message"]
    (alert,) = notifications(client, "vm-alert", 1)
    assert alert["alert"] == "unknown-vm-unregistration"
    assert (alert["vserver"], alert["tenant"], alert["name"]) == ("vs1", "alice", "ghost")


@pytest.mark.parametrize("given,tag,app_tag", [
    ({"tenant": "carol"}, "invalid-value", "unknown-tenant"),
    ({"vnid": 16777216}, "invalid-value", None),                     # VNI out of range
    ({"mac_address": "02:00:00:00:01:01"}, "data-exists", "duplicate-mac"),  # vm1's MAC
    ({"vserver": "vs9"}, "access-denied", "unknown-vserver"),
    ({"vm_group": "db"}, "invalid-value", "unknown-vm-group"),
])
def test_bad_registration_is_an_rpc_error_and_changes_nothing(
        client: Client, given: dict[str, Any], tag: str, app_tag: str | None) -> None:
    before = vcenter_state(client)
    request = {"vserver": "vs1", "tenant": "alice", "name": "vm3",
               "mac_address": "02:00:00:00:01:03", **given}
    with pytest.raises(RemoteRpcError) as exc:
        if "vnid" in given:       # our client validates too: send the XML as another would
            leaves = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>"
                             for k, v in request.items())
            client.dispatch(f'<register-vm xmlns="urn:nvo3:yang:{VC}">{leaves}</register-vm>')
        else:
            call(client, "register-vm", **request)
    print(f"\n{given} -> {exc.value.tag}: {exc.value.message}")
    assert exc.value.tag == tag
    if app_tag:
        assert exc.value.app_tag == app_tag
    assert vcenter_state(client) == before


# bulk ---------------------------------------------------------------------------------------
def test_bulk_register_1000_vms_in_one_request_then_bulk_unregister(client: Client) -> None:
    vms = [{"name": f"web{i:04d}", "mac-address": f"02:00:00:01:{i >> 8:02x}:{i & 255:02x}",
            "ip-address": [f"198.19.{20 + (i >> 8)}.{i & 255}"]} for i in range(1000)]
    t0 = time.perf_counter()
    out = call(client, "bulk-register-vms", vserver="vs1", tenant="alice",
               template={"vm-group": "web", "nve": "nve1", "resources": {"memory": 256}},
               vm=vms)
    took = time.perf_counter() - t0
    print(f"\nbulk-register-vms: 1,000 VMs in one request: {took * 1000:.0f} ms")
    assert (out["registered"], out["failed"]) == (1000, 0)
    assert lookup(client, mac_address="02:00:00:01:03:e7")[0]["name"] == "web0999"
    assert lookup(client, ip_address="198.19.21.0")[0]["name"] == "web0256"
    state = vcenter_state(client)
    assert len(vms_of(state)) == 1001
    (web,) = [g for t in state["tenants"]["tenant"] if t["name"] == "alice"
              for g in t["vm-group"]]
    assert web["member-count"] == 1001

    # a duplicate MAC inside a bulk request fails that VM only
    out = call(client, "bulk-register-vms", vserver="vs2", tenant="alice", template={},
               vm=[{"name": "x1", "mac-address": "02:00:00:01:00:00"},
                   {"name": "x2", "mac-address": "02:00:00:09:00:02"}])
    assert (out["registered"], out["failed"]) == (1, 1)
    results = {v["name"]: v["result"] for v in out["vm"]}
    assert results == {"x1": "already-exists", "x2": "ok"}

    client.create_subscription()
    t0 = time.perf_counter()
    out = call(client, "bulk-unregister-vms", vserver="vs1", tenant="alice", vm_group="web")
    print(f"bulk-unregister-vms: by VM group: {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert (out["unregistered"], out["unknown"]) == (1000, 0)
    out = call(client, "bulk-unregister-vms", vserver="vs2",
               vm=[{"tenant": "alice", "name": "x2"}, {"tenant": "alice", "name": "nope"}])
    assert (out["unregistered"], out["unknown"]) == (1, 1)
    assert [a["name"] for a in notifications(client, "vm-alert", 1)] == ["nope"]
    assert set(vms_of(vcenter_state(client))) == {("alice", "vm1")}


# reports and placement ----------------------------------------------------------------------
def report(c: Client, vserver: str, used: int, total: int = 16, **extra: Any) -> dict:
    return call(c, "report-vm", vserver=vserver, load={"vcpus-total": total,
                                                       "vcpus-used": used,
                                                       "memory-total": 65536,
                                                       "memory-used": 1024}, **extra)


def test_report_updates_load_state_and_placement(client: Client) -> None:
    call(client, "register-vm", vserver="vs1", tenant="bob", name="b1",
         mac_address="02:00:00:00:02:01")
    client.create_subscription()
    out = report(client, "vs1", 12, vm=[
        {"tenant": "bob", "name": "b1", "state": "powered-off", "cpu-utilization": 42},
        {"tenant": "bob", "name": "ghost", "state": "powered-on"}])
    assert out == {"accepted": 1, "unknown-vm": [{"tenant": "bob", "name": "ghost"}]}
    vm_report = notifications(client, "vm-report", 1)[0]
    assert (vm_report["state"], vm_report["previous-state"], vm_report["cpu-utilization"]) \
        == ("powered-off", "powered-on", 42)
    assert notifications(client, "vm-alert", 1)[0]["alert"] == "unknown-vm-report"
    report(client, "vs2", 4)
    state = vcenter_state(client)
    loads = {v["name"]: v["load"] for v in state["vservers"]["vserver"]}
    assert (loads["vs1"]["vcpus-used"], loads["vs2"]["vcpus-used"]) == (12, 4)
    assert vms_of(state)[("bob", "b1")]["monitoring"]["cpu-utilization"] == "42.0"

    # no vServer with capacity: a clear rpc-error, and no profile stored
    before = vcenter_state(client)
    with pytest.raises(RemoteRpcError) as exc:
        call(client, "create-vm", tenant="bob", name="big", mac_address="02:00:00:00:02:09",
             resources={"vcpus": 32})
    print(f"\nno capacity -> {exc.value.tag}: {exc.value.message}")
    assert exc.value.tag == "resource-denied" and "no vServer with capacity" in \
        exc.value.message
    assert "vs1: 32 vcpus needed, 4 free" in exc.value.message
    # least-loaded: vs2 is chosen (it is not running here, so the creation fails there, is
    # undone, and says which vServer placement chose)
    with pytest.raises(RemoteRpcError) as exc:
        call(client, "create-vm", tenant="bob", name="small", mac_address="02:00:00:00:02:0a")
    assert "vs2" in exc.value.message and exc.value.app_tag == "peer-failed"
    report(client, "vs2", 16)                       # vs2 is full now: vs1 is the choice
    with pytest.raises(RemoteRpcError) as exc:
        call(client, "create-vm", tenant="bob", name="small", mac_address="02:00:00:00:02:0a")
    assert "vServer vs1" in exc.value.message
    after = vcenter_state(client)
    assert vms_of(after) == vms_of(before)
    assert lookup(client, tenant="bob", name="small") == []


def test_operator_operations_on_unknown_vms_are_refused(client: Client) -> None:
    for rpc, extra in (("terminate-vm", {}), ("modify-vm", {"vlan": 5}),
                       ("relocate-vm", {"destination_vserver": "vs2"}),
                       ("replicate-vm", {"destination_vserver": "vs2",
                                         "terminate_source": True})):
        with pytest.raises(RemoteRpcError) as exc:
            call(client, rpc, tenant="alice", name="nope", **extra)
        assert exc.value.app_tag == "unknown-vm", rpc
    with pytest.raises(RemoteRpcError) as exc:          # vm1 is configured but not running
        call(client, "relocate-vm", tenant="alice", name="vm1", destination_vserver="vs2")
    assert exc.value.app_tag == "vm-not-running"


# crash recovery -----------------------------------------------------------------------------
def test_kill_9_and_restart_loses_no_profile(vcenter: RoleProcess) -> None:
    with vcenter.connect() as c:
        call(c, "register-vm", vserver="vs1", tenant="alice", name="vm2",
             mac_address="02:00:00:00:01:02", ip_address=["198.19.10.2"])
        call(c, "register-vm", vserver="vs2", tenant="alice", name="vm1",
             mac_address="02:00:00:00:01:01")
        call(c, "bulk-register-vms", vserver="vs2", tenant="bob", template={},
             vm=[{"name": f"b{i}", "mac-address": f"02:00:00:00:02:{i:02x}"}
                 for i in range(1, 11)])
        report(c, "vs2", 3)
        before = vms_of(vcenter_state(c))
    vcenter.kill()
    again = start_role("vcenter", vcenter.state_dir, password=vcenter.password)
    try:
        with again.connect() as c:
            after = vcenter_state(c)
            assert vms_of(after) == before
            assert lookup(c, ip_address="198.19.10.2")[0]["vserver"] == "vs1"
            assert len(lookup(c, tenant="bob", name="b7")) == 1
            loads = {v["name"]: v.get("load") for v in after["vservers"]["vserver"]}
            assert loads["vs2"]["vcpus-used"] == 3
    finally:
        again.stop(timeout=5)
