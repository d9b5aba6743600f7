"""The three clients against a whole lab: Ansible playbooks, netconf-console2 recipes, verbs.

One lab (the default two-DC topology, a prefix of its own, its state file in tmp) is brought
up by `nvo3 lab up` for the module and always taken down. Every client finds the daemons
through the lab state only: Ansible through the dynamic inventory
clients/ansible/inventory/from-lab.py (desired state in clients/ansible/lab-vars.yml), the
recipes through NC_LAB (clients/netconf-console/lab-env.py), the verbs through
NVO3_LAB_STATE. Host keys are verified everywhere (known_hosts made from the lab's host keys).

The tests run in file order: provision (twice: changed, then changed=0), create and move a VM
with rpc.yml (twice: the second run changes nothing) and check its mapping, then the verbs
agree with what Ansible did, then the recipes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from nvo3.lab.lab import session
from nvo3.lab.state import LabState

from .conftest import TOP, nvo3

PLAYBOOKS = TOP / "clients" / "ansible"
RECIPES = TOP / "clients" / "netconf-console"
BIN = Path(sys.executable).parent
PREFIX = f"nvo3c{os.getpid() % 100000}"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
ND = "urn:nvo3:yang:nvo3-ndirector"
VC = "urn:nvo3:yang:nvo3-vcenter"
NS = {"nc": NC, "nd": ND, "vc": VC}
XML_DECL = "<?xml version='1.0' encoding='UTF-8'?>"
VM = {"tenant": "alice", "name": "vm7", "mac": "02:00:00:0a:00:07", "from": "vserver2",
      "to": "vserver3", "nve": "host3", "vtep": "198.18.0.21"}     # as in lab-vars.yml
VCENTERS = ("vcenter-root", "vcenter-dc1", "vcenter-dc2")


@pytest.fixture(scope="module")
def collections_path() -> Path:
    """ansible-core and the two collections, installed at test time (GPL-3.0: not in git)."""
    out = subprocess.run(["bash", str(TOP / "scripts" / "ansible-collections")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NVO3_VENV": str(BIN.parent)})
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


class Ansible:
    """ansible-playbook from clients/ansible, inventory from the lab, lab-vars.yml."""

    def __init__(self, collections: Path, state: Path, tmp: Path) -> None:
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                    "NVO3_LAB_STATE": str(state),
                    "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
                    "ANSIBLE_COLLECTIONS_PATH": str(collections),
                    "ANSIBLE_HOME": str(tmp / "ansible-home"),
                    "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR": str(tmp / "pc"),
                    "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / command), "-i", "inventory/from-lab.py", *args],
                              cwd=PLAYBOOKS, env=self.env, capture_output=True, text=True,
                              timeout=120)

    def play(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run("ansible-playbook", "-e", "@lab-vars.yml", playbook, *args)
        print(result.stdout[-6000:], result.stderr[-2000:])
        return result


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters, per host; every host ok (no failure, reachable)."""
    text = result.stdout.split("PLAY RECAP")[-1]
    counts = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
              for m in re.finditer(r"^(\S+)\s+:\s+(.*)$", text, re.M)}
    assert counts, result.stdout + result.stderr
    assert result.returncode == 0 and all(
        c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), \
        result.stdout + result.stderr
    return counts


@pytest.fixture(scope="module")
def ansible(collections_path: Path, lab: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Ansible:
    return Ansible(collections_path, lab, tmp_path_factory.mktemp("ansible"))


def daemon(state: Path, name: str) -> dict[str, object]:
    return next(d for d in json.loads(state.read_text())["daemons"] if d["name"] == name)


# -- Ansible ------------------------------------------------------------------------------

def test_inventory_from_lab(ansible: Ansible, lab: Path) -> None:
    out = ansible.run("ansible-inventory", "--list")
    assert out.returncode == 0, out.stderr
    inv = json.loads(out.stdout)
    assert inv["ndirectors"]["hosts"] == ["ndirector"]
    assert inv["vcenters"]["hosts"] == ["vcenter-root"]
    assert sorted(inv["dc_vcenters"]["hosts"]) == ["vcenter-dc1", "vcenter-dc2"]
    assert len(inv["nves"]["hosts"]) == len(inv["vservers"]["hosts"]) == 4
    hv = inv["_meta"]["hostvars"]["vcenter-root"]
    root = daemon(lab, "vcenter-root")
    assert (hv["ansible_port"], hv["ansible_password"]) == (root["port"], root["password"])
    ssh_config = Path(hv["ansible_netconf_ssh_config"])
    known_hosts = ssh_config.parent / "known_hosts"
    assert f"[{root['host']}]:{root['port']} {root['host_key']}" in known_hosts.read_text()
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"


def test_own_playbook_with_lab_inventory(ansible: Ansible, lab: Path, tmp_path: Path) -> None:
    """A user's own playbook, outside clients/ansible (none of its group_vars, no
    ansible.cfg), works with the lab inventory alone: it sets the netconf connection."""
    book = tmp_path / "mine.yml"
    book.write_text("- hosts: ndirectors\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.netcommon.netconf_get:\n"
                    "        filter: <ndirector xmlns=\"urn:nvo3:yang:nvo3-ndirector\"><nves/>"
                    "</ndirector>\n      register: got\n"
                    "    - ansible.builtin.debug: {var: got.stdout}\n")
    env = {k: v for k, v in ansible.env.items() if k != "ANSIBLE_CONFIG"}
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i",
                             str(PLAYBOOKS / "inventory" / "from-lab.py"), str(book)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    print(result.stdout[-4000:], result.stderr[-2000:])
    assert recap(result)["ndirector"]["ok"] == 2
    assert "host1" in result.stdout and "Connection type ssh" not in result.stdout


def test_provision_twice(ansible: Ansible, lab: Path) -> None:
    first = recap(ansible.play("provision-tenant.yml", "--diff"))
    assert {h: c["changed"] for h, c in first.items()} == \
        dict.fromkeys(("ndirector", *VCENTERS), 1)
    second = recap(ansible.play("provision-tenant.yml"))
    assert all(c["changed"] == 0 for c in second.values()), second
    recap(ansible.play("verify-tenant.yml"))
    # what the lab's daemons now hold: carol's network and tenant (VM group app)
    st = LabState.load(lab)
    with session(st.daemon("ndirector")) as c:
        net = c.get_config("running").xpath("//nd:network[nd:vni='10030']", namespaces=NS)
    assert net and net[0].findtext(f"{{{ND}}}tenant") == "carol"
    for name in VCENTERS:
        with session(st.daemon(name)) as c:
            groups = c.get_config("running").xpath(
                "//vc:tenant[vc:name='carol']/vc:vm-group/vc:name/text()", namespaces=NS)
        assert groups == ["app"], name


def test_check_mode_changes_nothing(ansible: Ansible) -> None:
    extra = json.dumps({"nvo3_networks": [{"vni": 10031, "tenant": "carol",
                                           "members": ["host1"]}]})
    result = ansible.play("provision-tenant.yml", "--check", "--diff", "--limit",
                          "ndirectors", "-e", extra)
    assert recap(result)["ndirector"]["changed"] == 1 and "<vni>10031</vni>" in result.stdout
    again = ansible.play("provision-tenant.yml", "--check", "--limit", "ndirectors",
                         "-e", extra)
    assert recap(again)["ndirector"]["changed"] == 1       # still not applied


def test_rpc_create_move_and_mapping(ansible: Ansible) -> None:
    result = ansible.play("rpc.yml", "-e", "nvo3_vcenter_rpcs=true")
    counts = recap(result)
    assert counts["vcenter-root"]["changed"] == 2         # create-vm, relocate-vm
    assert counts["ndirector"]["changed"] == 0
    out = result.stdout
    assert "at NVE host4 VTEP 198.18.0.22 (activated)" in out        # vm9, the first play
    assert f"TASK [create-vm {VM['tenant']}/{VM['name']}]" in out
    assert f"TASK [relocate-vm to {VM['to']}]" in out
    assert f"{VM['mac']} at NVE {VM['nve']} VTEP {VM['vtep']}" in out   # mapping moved
    again = ansible.play("rpc.yml", "-e", "nvo3_vcenter_rpcs=true")
    counts = recap(again)
    assert all(c["changed"] == 0 for c in counts.values()), counts
    assert counts["vcenter-root"]["skipped"] == 2         # no create, no relocate


# -- the verbs agree ----------------------------------------------------------------------

def test_verbs_agree_with_ansible(lab: Path) -> None:
    vms = json.loads(nvo3("vm", "list", "--json", state=lab).stdout)
    vm = next(v for v in vms if (v["tenant"], v["name"]) == (VM["tenant"], VM["name"]))
    assert (vm["vserver"], vm["nve"], vm["mac-address"], vm["state"]) == \
        (VM["to"], VM["nve"], VM["mac"], "powered-on")
    assert (vm["location"]["vserver"], vm["location"].get("data-center")) == (VM["to"], "dc2")
    rows = json.loads(nvo3("mapping", "show", "--json", "--mac", VM["mac"], state=lab).stdout)
    assert [(r["vni"], r["nve"], r["vtep-address"]) for r in rows] == \
        [(10010, VM["nve"], VM["vtep"])]
    assert rows[0]["moves"] >= 1
    table = nvo3("vm", "list", state=lab).stdout
    assert re.search(rf"alice\s+vm7\s+powered-on\s+{VM['to']}\s+{VM['nve']}", table), table


# -- netconf-console2 recipes -------------------------------------------------------------

def recipe(lab: Path, target: str, name: str, *args: str, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(RECIPES / "recipes.sh"), name, *args], capture_output=True, text=True,
        timeout=30, env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                         "NVO3_LAB_STATE": str(lab), "NC_LAB": target, **(env or {})})
    if check:
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr}"
    return result


def replies(stdout: str) -> list[etree._Element]:
    return [etree.fromstring(d.strip().encode()) for d in stdout.split(XML_DECL) if d.strip()]


def test_recipes_hello_and_get(lab: Path) -> None:
    for target, module in (("ndirector", "nvo3-ndirector"), ("vcenter-root", "nvo3-vcenter"),
                           ("vserver1", "nvo3-vserver"), ("nve-host1", "nvo3-nve")):
        (hello,) = replies(recipe(lab, target, "hello").stdout)
        caps = [c.text for c in hello.iter(f"{{{NC}}}capability")]
        assert any(f"module={module}" in c for c in caps), (target, caps)
        assert "urn:ietf:params:netconf:capability:candidate:1.0" in caps
    (data,) = replies(recipe(lab, "ndirector", "get_nves").stdout)   # --get -x
    assert data.xpath("//nd:nve/nd:name/text()", namespaces=NS) == \
        ["host1", "host2", "host3", "host4"]
    assert set(data.xpath("//nd:nve/nd:session/nd:state/text()", namespaces=NS)) == \
        {"connected"}
    (data,) = replies(recipe(lab, "vcenter-root", "get_sessions").stdout)
    assert data.xpath("//*[local-name()='session']")


def test_recipes_edit_config_get_config(lab: Path) -> None:
    (reply,) = replies(recipe(lab, "ndirector", "edit_config",
                              str(RECIPES / "lab" / "network.xml")).stdout)
    assert reply.tag == f"{{{NC}}}ok"
    (data,) = replies(recipe(lab, "ndirector", "get_config").stdout)
    assert data.xpath("//nd:network[nd:vni='10040']/nd:tenant/text()", namespaces=NS) == \
        ["dave"]
    # the lab's NVEs were left as `lab up` configured them
    assert len(data.xpath("//nd:nves/nd:nve/nd:host-key", namespaces=NS)) == 4


def test_recipe_commit_confirmed(lab: Path, tmp_path: Path) -> None:
    payload = tmp_path / "net.xml"
    payload.write_text((RECIPES / "lab" / "network.xml").read_text()
                       .replace("10040", "10041").replace(">dave<", ">dave2<"))
    out = recipe(lab, "ndirector", "commit_confirmed", str(payload),
                 env={"NC_CONFIRM_TIMEOUT": "2"}).stdout
    _edit, _confirmed, data, confirm = replies(out)
    assert "10041" in data.xpath("//nd:network/nd:vni/text()", namespaces=NS)
    assert confirm.tag == f"{{{NC}}}ok"
    time.sleep(2.5)                                  # past the timeout: it was confirmed
    (data,) = replies(recipe(lab, "ndirector", "get_config").stdout)
    assert data.xpath("//nd:network[nd:vni='10041']", namespaces=NS)


def test_recipes_rpcs(lab: Path, tmp_path: Path) -> None:
    (reply,) = replies(recipe(lab, "vcenter-root", "lookup_vm",
                              str(RECIPES / "lab" / "lookup-vm.xml")).stdout)
    assert reply.xpath("//vc:vm/vc:name/text()", namespaces=NS) == ["vm9"]
    assert reply.xpath("//vc:vm/vc:vserver/text()", namespaces=NS) == ["vserver4"]
    # the VM Ansible created and moved, by its MAC
    mine = tmp_path / "lookup-vm7.xml"
    mine.write_text((RECIPES / "lab" / "lookup-vm.xml").read_text()
                    .replace("02:00:00:0a:00:09", VM["mac"]))
    (reply,) = replies(recipe(lab, "vcenter-root", "lookup_vm", str(mine)).stdout)
    assert reply.xpath("//vc:vm/vc:vserver/text()", namespaces=NS) == [VM["to"]]
    (reply,) = replies(recipe(lab, "ndirector", "lookup",
                              str(RECIPES / "lab" / "lookup.xml")).stdout)
    assert reply.findtext(f"{{{ND}}}nve") == "host4"


def test_recipe_unknown_daemon(lab: Path) -> None:
    result = recipe(lab, "nope", "hello", check=False)
    assert result.returncode == 2 and "no daemon 'nope' in the lab" in result.stderr
