"""`nvo3 group create|list|delete`: the vm-groups of a tenant, in the vCenter's configuration.

A vm-group carries a profile (VLAN, default resources) that its member VMs inherit; the
verbs edit /vcenter/tenants/tenant/vm-group in the running datastore (edit-config with
operation create or delete, so an existing group is not overwritten and a missing one is
reported by the server).
"""

from __future__ import annotations

import argparse
from typing import Any

import libyang

from nvo3.common.names import VCENTER as MODULE
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client, RemoteRpcError
from nvo3.roles.peers import codec
from nvo3.roles.peers.codec import OPERATION
from nvo3.verbs import OK
from nvo3.verbs.common import BadInput, NotFound, Refused, run, state
from nvo3.verbs.output import emit_json, table

COLUMNS = (("tenant", "TENANT"), ("name", "GROUP"), ("vlan", "VLAN"), ("vcpus", "VCPUS"),
           ("memory", "MEMORY"), ("disk", "DISK"), ("member-count", "MEMBERS"),
           ("description", "DESCRIPTION"))


def edit(tenant: str, group: str, operation: str, profile: Tree | None = None,
         description: str | None = None) -> Tree:
    """The /vcenter tree of one vm-group edit (built without I/O; the codec validates it)."""
    entry: Tree = {OPERATION: operation, "name": group}
    if description:
        entry["description"] = description
    if profile:
        body: Tree = {}
        if profile.get("vlan") is not None:
            body["vlan"] = profile["vlan"]
        res = {k: v for k, v in (profile.get("resources") or {}).items() if v is not None}
        if res:
            body["resources"] = res
        entry["profile"] = body
    return {"vcenter": {"tenants": {"tenant": [{"name": tenant, "vm-group": [entry]}]}}}


def _edit(client: Client, tree: Tree) -> None:
    try:
        codec.merge_config(client, MODULE, tree)
    except RemoteRpcError as exc:
        raise Refused("edit-config", exc) from None
    except (libyang.LibyangError, TypeError) as exc:
        raise BadInput(f"edit-config: invalid input: {exc}") from None


def _tenants(client: Client) -> list[str]:
    try:
        vc = codec.get_config(client, MODULE, "vcenter")
    except RemoteRpcError as exc:
        raise Refused("get-config", exc) from None
    return [t["name"] for t in entries(vc, "tenants", "tenant")]


def create(args: argparse.Namespace, client: Client) -> int:
    if args.tenant not in _tenants(client):
        raise NotFound(f"the vCenter has no tenant {args.tenant!r}")
    profile = {"vlan": args.vlan, "resources": {"vcpus": args.vcpus, "memory": args.memory,
                                                "disk": args.disk}}
    _edit(client, edit(args.tenant, args.name, "create", profile, args.description))
    if args.json:
        emit_json({"tenant": args.tenant, "name": args.name, "result": "created"})
    else:
        print(f"group {args.tenant}/{args.name} created")
    return OK


def rows_of(vc: Tree) -> list[Tree]:
    """One row per vm-group of the vCenter's state."""
    rows = []
    for t in entries(vc, "tenants", "tenant"):
        for g in t.get("vm-group") or []:
            profile = g.get("profile") or {}
            rows.append({"tenant": t["name"], "name": g["name"],
                         "description": g.get("description"), "vlan": profile.get("vlan"),
                         **(profile.get("resources") or {}),
                         "member-count": int(g.get("member-count", 0))})
    return rows


def list_(args: argparse.Namespace, client: Client) -> int:
    rows = [r for r in rows_of(state(client, MODULE, "vcenter"))
            if args.tenant in (None, r["tenant"])]
    if args.json:
        emit_json(rows)
    elif rows:
        table(rows, COLUMNS)
    else:
        print("no groups")
    return OK


def delete(args: argparse.Namespace, client: Client) -> int:
    _edit(client, edit(args.tenant, args.name, "delete"))
    if args.json:
        emit_json({"tenant": args.tenant, "name": args.name, "result": "deleted"})
    else:
        print(f"group {args.tenant}/{args.name} deleted")
    return OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("group", help="a tenant's vm-groups at the vCenter")
    verbs = group.add_subparsers(dest="group_command", required=True, metavar="VERB")

    def verb(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, parents=[common])
        p.set_defaults(func=lambda args: run("vcenter", fn, args))
        return p

    p = verb("create", create, "add a vm-group with its profile")
    p.add_argument("name")
    p.add_argument("-t", "--tenant", required=True)
    p.add_argument("--vlan", type=int)
    p.add_argument("--vcpus", type=int, help="default vCPUs of its VMs")
    p.add_argument("--memory", type=int, metavar="MB")
    p.add_argument("--disk", type=int, metavar="GB")
    p.add_argument("--description")
    p = verb("list", list_, "list vm-groups and their member counts")
    p.add_argument("-t", "--tenant")
    p = verb("delete", delete, "remove a vm-group")
    p.add_argument("name")
    p.add_argument("-t", "--tenant", required=True)
