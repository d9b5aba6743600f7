"""Each netconf-console2 recipe in clients/netconf-console/recipes.sh, run against a real
daemon with its host key verified (--hostkey-verify, known_hosts named by --ssh-config)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lxml import etree

from .conftest import NC, ND, Server

TOP = Path(__file__).resolve().parents[2]
RECIPES = TOP / "clients" / "netconf-console" / "recipes.sh"
NS = {"nc": NC, "nd": ND}
XML_DECL = "<?xml version='1.0' encoding='UTF-8'?>"


def recipe(server: Server, name: str, *args: str, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = server.proc
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "NC_HOST": p.host, "NC_PORT": str(p.port), "NC_USER": p.username,
           "NC_PASSWORD": p.password, "NC_SSH_CONFIG": str(server.ssh_config), **(env or {})}
    result = subprocess.run(["bash", str(RECIPES), name, *args], capture_output=True,
                            text=True, env=env, timeout=30)
    if check:
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr}"
    return result


def replies(stdout: str) -> list[etree._Element]:
    """The XML documents netconf-console2 printed, one per operation."""
    return [etree.fromstring(d.strip().encode()) for d in stdout.split(XML_DECL) if d.strip()]


def vnis(server: Server) -> list[str]:
    with server.proc.connect() as c:
        data = c.get_config("running")
    return [str(v) for v in data.xpath("//nd:network/nd:vni/text()", namespaces=NS)]


def test_hello(nd: Server) -> None:
    (hello,) = replies(recipe(nd, "hello").stdout)
    caps = [c.text for c in hello.iter(f"{{{NC}}}capability")]
    assert "urn:ietf:params:netconf:capability:confirmed-commit:1.1" in caps
    assert any(c.startswith(f"{ND}?module=nvo3-ndirector") for c in caps)


def test_get_with_xpath(nd: Server) -> None:
    (data,) = replies(recipe(nd, "get_sessions").stdout)
    users = data.xpath("//m:session/m:username/text()",
                       namespaces={"m": "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"})
    assert "admin" in users
    recipe(nd, "edit_config")
    (data,) = replies(recipe(nd, "get_nves").stdout)
    assert data.xpath("//nd:nve/nd:name/text()", namespaces=NS) == ["host1", "host2"]
    assert data.xpath("//nd:nve/nd:session/nd:state", namespaces=NS)   # state data too


def test_edit_config_then_get_config(nd: Server) -> None:
    (reply,) = replies(recipe(nd, "edit_config").stdout)
    assert reply.tag == f"{{{NC}}}ok"
    (data,) = replies(recipe(nd, "get_config").stdout)
    assert data.xpath("//nd:network/nd:name/text()", namespaces=NS) == ["alice-web"]
    (data,) = replies(recipe(nd, "get_config_candidate_defaults").stdout)
    assert data.xpath("string(//nd:duplicate-mac-detection/nd:freeze)", namespaces=NS)


def test_locked_edit(nd: Server) -> None:
    out = recipe(nd, "locked_edit").stdout
    assert [r.tag for r in replies(out)] == [f"{{{NC}}}ok"] * 4     # lock edit commit unlock
    assert vnis(nd) == ["10010"]


def test_commit_confirmed_then_confirmed(nd: Server) -> None:
    out = recipe(nd, "commit_confirmed", env={"NC_CONFIRM_TIMEOUT": "2"}).stdout
    _edit, _confirmed, data, confirm = replies(out)
    assert data.xpath("//nd:network/nd:vni/text()", namespaces=NS) == ["10010"]
    assert confirm.tag == f"{{{NC}}}ok"
    time.sleep(2.5)                                  # past the timeout: it was confirmed
    assert vnis(nd) == ["10010"]


def test_rpc_ndirector_lookup(nd: Server) -> None:
    """The draft's lookup from yang/examples (the lab's alice/vm9): a bare nDirector answers
    data-missing."""
    recipe(nd, "edit_config")
    result = recipe(nd, "lookup", check=False)
    assert result.returncode == 255, result.stdout + result.stderr
    (err,) = replies(XML_DECL + result.stdout)
    assert err.findtext(f"{{{NC}}}error-tag") == "data-missing"
    assert "no mapping for MAC 02:00:00:0a:00:09 in VNI 10010" in result.stdout


def test_rpc_vcenter_lookup_vm(vcenter: Server) -> None:
    result = recipe(vcenter, "lookup_vm", check=False)
    # the vCenter's own answer: a bare vCenter knows no VM and replies with an empty output
    # (<ok/>); in a lab, where the VM runs
    assert result.returncode == 0, result.stdout + result.stderr
    (reply,) = replies(result.stdout)
    assert reply.tag == f"{{{NC}}}rpc-reply"


def test_host_key_is_verified(nd: Server) -> None:
    good = nd.known_hosts.read_text()
    try:
        nd.known_hosts.write_text("")
        result = recipe(nd, "hello", check=False)
        assert result.returncode != 0
        assert "SSHUnknownHostError - Unknown host key" in result.stdout, result.stdout
    finally:
        nd.known_hosts.write_text(good)
