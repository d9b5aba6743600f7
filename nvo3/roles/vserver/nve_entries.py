"""What the NVE should hold for a VM, and the edit-config that puts it there (pure).

The attachment is ``activated`` exactly while the VM is powered on, ``associated``
otherwise (RFC 8394 split-NVE); a VM's group policy (ACL, rate limit) goes beside it.
"""

from __future__ import annotations

import hashlib

from nvo3.common import names
from nvo3.common.tree import Tree
from nvo3.roles.peers import codec as peer
from nvo3.roles.vserver.vm_driver import Vm

#: The nvo3-nve containers a vServer edits and their lists, in the order of an edit.
NVE_LISTS = {"networks": "network", "attachments": "attachment", "policies": "policy"}


def default_port(tenant: str, name: str) -> str:
    """A host interface name for a VM's vNIC: 15 characters, stable, unlikely to collide."""
    return "vm" + hashlib.sha1(f"{tenant}/{name}".encode()).hexdigest()[:13]


def clean_policy(tree: Tree | None) -> Tree:
    """The policy container without empty parts."""
    given = tree or {}
    out: Tree = {}
    acl = given.get("acl") or {}
    if acl.get("rule") or acl.get("default-action") not in (None, "permit"):
        out["acl"] = acl
    if given.get("rate-limit"):
        out["rate-limit"] = given["rate-limit"]
    return out


def nve_entries(vm: Vm) -> tuple[Tree, Tree, Tree | None]:
    """(network, attachment, policy or None) of `vm` at its NVE, in nvo3-nve dict shape."""
    p = vm.profile
    vni = int(p["vnid"])
    att: Tree = {"vni": vni, "mac": vm.mac, "vm-id": vm.name, "port": vm.port,
                 "state": "activated" if p.get("state") == "powered-on" else "associated"}
    if vm.ips:
        att["ip-address"] = list(vm.ips)
    if p.get("vlan") is not None:
        att["vlan"] = int(p["vlan"])
    pol = clean_policy(p.get("policy"))
    policy = {"vni": vni, "mac": vm.mac, **pol} if pol else None
    return {"vni": vni}, att, policy


def nve_edit(ops: list[tuple[str, str, Tree]]) -> str:
    """One edit-config <config> for `ops`: (container, operation, entry), e.g.
    ("attachments", "merge", {...}); containers networks, attachments, policies, in that
    order (a network must exist before an attachment refers to it)."""
    order = list(NVE_LISTS)
    ordered = sorted(ops, key=lambda o: order.index(o[0]))
    return peer.list_edit(names.NVE, "nve",
                          [(c, NVE_LISTS[c], op, entry) for c, op, entry in ordered])
