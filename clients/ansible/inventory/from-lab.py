#!/usr/bin/env python3
"""Ansible dynamic inventory of the running nvo3 lab (`nvo3 lab up`).

Reads the lab state file ($NVO3_LAB_STATE, default /run/nvo3/lab.json; see nvo3/lab/state.py)
and prints every daemon as a host with its address, port, user and password. Groups:

  ndirectors      the nDirector
  vcenters        the root vCenter (vcenter-root): the one operators call (rpc.yml)
  dc_vcenters     the child vCenters, one per data center
  vservers, nves  the per-host agents

Host keys are verified, never skipped: a known_hosts made from the daemons' host keys and an
ssh_config naming it are written into the lab's work directory (`<work_dir>/ansible/`, removed
by `nvo3 lab down`), and every host gets `ansible_netconf_ssh_config` pointing at it.

    ansible-inventory -i inventory/from-lab.py --graph
    ansible-playbook -i inventory/from-lab.py -e @lab-vars.yml provision-tenant.yml

Standard library only (any python3 runs it). The state file is mode 0600: so is what this
writes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: how every host is reached, also by a playbook of the user's own outside clients/ansible
#: (whose group_vars it does not see): NETCONF over SSH, host keys checked, no ~/.ssh keys
CONNECTION = {"ansible_connection": "ansible.netcommon.netconf",
              "ansible_network_os": "ansible.netcommon.default",
              "ansible_netconf_look_for_keys": False, "ansible_paramiko_look_for_keys": False,
              "ansible_host_key_checking": True,
              "ansible_python_interpreter": "{{ ansible_playbook_python }}"}

GROUPS = {"ndirector": "ndirectors", "vserver": "vservers", "nve": "nves"}
ROOT_VCENTER = "vcenter-root"


def state_path() -> Path:
    return Path(os.environ.get("NVO3_LAB_STATE", "/run/nvo3/lab.json"))


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ssh_files(lab: dict) -> Path:
    """known_hosts (one "[HOST]:PORT KEY" line per daemon) and ssh_config; the ssh_config."""
    folder = Path(lab.get("work_dir") or state_path().parent) / "ansible"
    known_hosts = folder / "known_hosts"
    write_private(known_hosts, "".join(f"[{d['host']}]:{d['port']} {d['host_key']}\n"
                                       for d in lab["daemons"]))
    ssh_config = folder / "ssh_config"
    write_private(ssh_config, f"Host *\n    UserKnownHostsFile {known_hosts}\n")
    return ssh_config


def inventory() -> dict:
    path = state_path()
    if not path.exists():
        sys.exit(f"no lab is up ({path} does not exist): run `nvo3 lab up` "
                 "(or set NVO3_LAB_STATE)")
    lab = json.loads(path.read_text())
    ssh_config = str(ssh_files(lab))
    groups: dict[str, list[str]] = {"ndirectors": [], "vcenters": [], "dc_vcenters": [],
                                    "vservers": [], "nves": []}
    hostvars = {}
    for d in lab["daemons"]:
        if d["role"] == "vcenter":
            group = "vcenters" if d["name"] == ROOT_VCENTER else "dc_vcenters"
        else:
            group = GROUPS[d["role"]]
        groups[group].append(d["name"])
        hostvars[d["name"]] = {
            **CONNECTION, "ansible_host": d["host"], "ansible_port": d["port"],
            "ansible_user": d["username"], "ansible_password": d["password"],
            "ansible_netconf_ssh_config": ssh_config,
            "nvo3_role": d["role"], "nvo3_data_center": d.get("data_center") or "",
            "nvo3_netns": d.get("netns") or ""}
    out: dict = {g: {"hosts": hosts} for g, hosts in groups.items()}
    out["all"] = {"children": list(groups), "vars": {"nvo3_lab_prefix": lab["prefix"]}}
    out["_meta"] = {"hostvars": hostvars}
    return out


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--host":
        print(json.dumps(inventory()["_meta"]["hostvars"].get(argv[2], {})))
    else:
        print(json.dumps(inventory(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
