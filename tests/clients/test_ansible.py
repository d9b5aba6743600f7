"""The Ansible playbooks in clients/ansible against a real nDirector (and vCenter) daemon.

ansible-core and the two collections the playbooks use (ansible.netcommon, ansible.utils) are
installed at test time by scripts/ansible-collections: the collections are GPL-3.0 and stay
out of git. Each run gets its own inventory (host, port, user, password, ssh_config naming a
known_hosts made from the daemon's ready line: host keys are verified, never skipped) and
its own ANSIBLE_HOME and persistent-connection folder under tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from .conftest import ND, Server

TOP = Path(__file__).resolve().parents[2]
PLAYBOOKS = TOP / "clients" / "ansible"
BIN = Path(sys.executable).parent
NS = {"nd": ND}


@pytest.fixture(scope="session")
def collections_path() -> Path:
    """Install ansible-core and the collections if needed; the ANSIBLE_COLLECTIONS_PATH."""
    out = subprocess.run(["bash", str(TOP / "scripts" / "ansible-collections")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NVO3_VENV": str(BIN.parent)})
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip().splitlines()[-1])
    assert (path / "ansible_collections" / "ansible" / "netcommon").is_dir()
    return path


class Ansible:
    """Runs ansible-playbook from clients/ansible against one inventory."""

    def __init__(self, collections: Path, tmp: Path, servers: dict[str, Server]) -> None:
        self.inventory = tmp / "inventory.yml"
        lines = ["all:", "  children:"]
        for group, server in servers.items():
            p = server.proc
            lines += [f"    {group}s:", "      hosts:",
                      f"        {group}1:",
                      f"          ansible_host: {p.host}",
                      f"          ansible_port: {p.port}",
                      f"          ansible_user: {p.username}",
                      f"          ansible_password: {p.password}",
                      f"          ansible_netconf_ssh_config: {server.ssh_config}"]
        self.inventory.write_text("\n".join(lines) + "\n")
        self.env = {**os.environ,
                    "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                    "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
                    "ANSIBLE_COLLECTIONS_PATH": str(collections),
                    "ANSIBLE_HOME": str(tmp / "ansible-home"),
                    "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR": str(tmp / "pc"),
                    "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        self.tmp = tmp

    def vars_file(self, name: str, text: str) -> str:
        f = self.tmp / name
        f.write_text(text)
        return f"@{f}"

    def play(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory),
                               playbook, *args], cwd=PLAYBOOKS, env=self.env,
                              capture_output=True, text=True, timeout=120)


def recap(result: subprocess.CompletedProcess[str], host: str) -> dict[str, int]:
    """The PLAY RECAP counters of `host`."""
    m = re.search(rf"^{host}\s+:\s+(.*)$", result.stdout.split("PLAY RECAP")[-1], re.M)
    assert m, result.stdout + result.stderr
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def ok(result: subprocess.CompletedProcess[str], host: str = "ndirector1") -> dict[str, int]:
    counts = recap(result, host)
    assert result.returncode == 0 and counts["failed"] == 0 and counts["unreachable"] == 0, \
        result.stdout + result.stderr
    return counts


def running(server: Server) -> bytes:
    with server.proc.connect() as c:
        return etree.tostring(c.get_config("running"))


def vnis(server: Server) -> list[str]:
    with server.proc.connect() as c:
        data = c.get_config("running")
    return [str(v) for v in data.xpath("//nd:network/nd:vni/text()", namespaces=NS)]


@pytest.fixture
def ansible(collections_path: Path, nd: Server, tmp_path: Path) -> Iterator[Ansible]:
    yield Ansible(collections_path, tmp_path, {"ndirector": nd})


def test_provision_twice_then_verify(ansible: Ansible, nd: Server) -> None:
    first = ansible.play("provision-tenant.yml", "--diff")
    assert ok(first)["changed"] == 1
    assert "+++ after" in first.stdout and "<vni>10010</vni>" in first.stdout
    assert vnis(nd) == ["10010"]
    second = ansible.play("provision-tenant.yml")
    assert ok(second)["changed"] == 0
    verify = ansible.play("verify-tenant.yml")
    assert ok(verify)["failed"] == 0
    # the NVE's session state, read by XPath: nothing listens at host1's address, so the
    # nDirector's session to it is down or, between two reconnect attempts, connecting
    assert re.search(r"host1: (down|connecting)\b", verify.stdout), verify.stdout


def test_check_mode_reports_and_changes_nothing(ansible: Ansible, nd: Server) -> None:
    before = running(nd)
    result = ansible.play("provision-tenant.yml", "--check", "--diff")
    assert ok(result)["changed"] == 1
    assert "+++ after" in result.stdout and "alice-web" in result.stdout
    assert running(nd) == before
    with nd.proc.connect() as c:              # --check discarded its candidate edit
        assert len(c.get_config("candidate")) == 0


def test_failing_edit_fails_the_play_with_the_rpc_error(ansible: Ansible, nd: Server) -> None:
    bad = ansible.vars_file("bad.yml", "nvo3_networks:\n"
                                       "  - {vni: 0, tenant: alice, members: [host1]}\n")
    result = ansible.play("provision-tenant.yml", "-e", bad)
    assert result.returncode != 0 and recap(result, "ndirector1")["failed"] == 1
    # the server's rpc-error text (error-message of the invalid VNI) reaches the output
    assert "FAILED!" in result.stdout, result.stdout
    assert 'value "0" is out of the allowed range' in result.stdout, result.stdout
    assert vnis(nd) == []
    with nd.proc.connect() as c:
        assert len(c.get_config("candidate")) == 0


def test_confirmed_commit_confirmed(ansible: Ansible, nd: Server) -> None:
    extra = ansible.vars_file("v.yml", "nvo3_networks:\n"
                                       "  - {vni: 10030, tenant: carol, members: [host1]}\n")
    ok(ansible.play("confirmed-commit.yml", "-e", extra, "-e", "nvo3_confirm_timeout=30"))
    assert vnis(nd) == ["10030"]


def test_confirmed_commit_not_confirmed_rolls_back(ansible: Ansible, nd: Server) -> None:
    extra = ansible.vars_file("v.yml", "nvo3_networks:\n"
                                       "  - {vni: 10030, tenant: carol, members: [host1]}\n")
    result = ansible.play("confirmed-commit.yml", "-e", extra, "-e", "nvo3_confirm=false")
    ok(result)                                # it was in running while the play checked it
    assert vnis(nd) == []                     # and rolled back when the session ended


def test_rpc_lookup(ansible: Ansible, nd: Server) -> None:
    missing = ('{"nvo3_lookup": {"vni": 10010, "mac": "02:00:00:00:01:02", '
               '"expect": "missing"}}')
    result = ansible.play("rpc.yml", "-e", missing)
    ok(result)
    assert "no mapping for MAC 02:00:00:00:01:02 in VNI 10010" in result.stdout
    # the vCenter play is skipped unless nvo3_vcenter_rpcs=true (and there is no vCenter here)
    wrong = missing.replace("missing", "found")
    assert ansible.play("rpc.yml", "-e", wrong).returncode != 0


def test_vcenter_rpcs_when_enabled(collections_path: Path, nd: Server, vcenter: Server,
                                   tmp_path: Path) -> None:
    ans = Ansible(collections_path, tmp_path, {"ndirector": nd, "vcenter": vcenter})
    result = ans.play("rpc.yml", "--limit", "vcenters", "-e", "nvo3_vcenter_rpcs=true")
    # create-vm reaches the vCenter's logic: this bare vCenter has no tenant and no vServer,
    # so it refuses with its own error text; a lab with vServers runs the whole play
    assert "TASK [create-vm alice/vm2]" in result.stdout
    if result.returncode != 0:
        assert "unknown tenant 'alice'" in result.stdout, result.stdout
    else:
        ok(result, "vcenter1")


def test_host_key_is_verified(ansible: Ansible, nd: Server) -> None:
    good = nd.known_hosts.read_text()
    try:
        nd.known_hosts.write_text("")
        result = ansible.play("verify-tenant.yml")
        assert result.returncode != 0
        assert re.search(r"unknown host|host key|known_hosts", result.stdout + result.stderr,
                         re.I), result.stdout
    finally:
        nd.known_hosts.write_text(good)


def test_lab_inventory_parses(collections_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
           "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "NVO3_PASSWORD": "x"}
    out = subprocess.run([str(BIN / "ansible-inventory"), "--graph"], cwd=PLAYBOOKS, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ndirector1" in out.stdout and "vcenter1" in out.stdout
