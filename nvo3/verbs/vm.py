"""`nvo3 vm create|list|show|move|replicate|delete|lookup`: VMs through the vCenter.

Every verb is one or more nvo3-vcenter operations: create-vm, lookup-vm, relocate-vm,
replicate-vm, terminate-vm, and <get> of /vcenter for the list. Bulk work (``--count N``
or several names) runs one RPC per VM, shows progress on stderr and carries on past a
refusal; the exit code is then 1 when any VM failed.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from typing import Any

from nvo3.common.mac import derived_mac
from nvo3.common.names import NDIRECTOR
from nvo3.common.names import VCENTER as MODULE
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client
from nvo3.verbs import OK, REFUSED
from nvo3.verbs.common import BadInput, NotFound, Refused, rpc, run, state
from nvo3.verbs.output import Progress, emit_json, error_dict, fields, table
from nvo3.verbs.targets import TargetError, resolve, session

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")

#: nvo3-types vm-state (tests/clients/test_verbs.py holds it to the YANG enumeration)
VM_STATES = ("created", "powered-on", "powered-off", "migrating", "deleted")

LIST_COLUMNS = (("tenant", "TENANT"), ("name", "NAME"), ("state", "STATE"),
                ("vserver", "VSERVER"), ("nve", "NVE"), ("vnid", "VNID"),
                ("mac-address", "MAC"), ("ip-address", "IP"), ("vm-group", "GROUP"))
LOOKUP_COLUMNS = (("tenant", "TENANT"), ("name", "NAME"), ("state", "STATE"),
                  ("vserver", "VSERVER"), ("nve", "NVE"), ("vtep-address", "VTEP"),
                  ("vnid", "VNID"), ("mac-address", "MAC"), ("ip-address", "IP"))


# -- names, addresses -------------------------------------------------------------------------

def names_of(name: str, count: int | None) -> list[str]:
    """`name`, or with --count N: NAME-1..NAME-N (or NAME with {n} replaced)."""
    if count is None:
        return [name]
    if count < 1:
        raise BadInput("--count must be at least 1")
    return [name.format(n=n) if "{n}" in name else f"{name}-{n}" for n in range(1, count + 1)]


def nth_mac(base: str, i: int) -> str:
    if not MAC_RE.match(base):
        raise BadInput(f"{base!r} is not a MAC address")
    value = int(re.sub("[:-]", "", base), 16) + i
    if value >= 1 << 48:
        raise BadInput(f"{base} + {i} is past ff:ff:ff:ff:ff:ff")
    return ":".join(f"{(value >> s) & 0xff:02x}" for s in range(40, -8, -8))


def nth_ip(base: str, i: int) -> str:
    try:
        return str(ipaddress.ip_address(base) + i)
    except ValueError as exc:
        raise BadInput(f"--ip {base}: {exc}") from None


def classify(key: str) -> str:
    """Which lookup-vm key `key` is: mac-address, ip-address or name."""
    if MAC_RE.match(key):
        return "mac-address"
    try:
        ipaddress.ip_address(key)
        return "ip-address"
    except ValueError:
        return "name"


def _resources(args: argparse.Namespace) -> Tree:
    return {k: v for k, v in (("vcpus", args.vcpus), ("memory", args.memory),
                              ("disk", args.disk)) if v is not None}


# -- create -----------------------------------------------------------------------------------

def _template(client: Client, tenant: str, name: str) -> Tree:
    rows = rpc(client, MODULE, "lookup-vm", {"tenant": tenant, "name": name}).get("vm") or []
    if not rows:
        raise NotFound(f"no VM {tenant}/{name} to use as a template")
    return {k: rows[0][k] for k in ("vnid", "vlan", "vm-group") if rows[0].get(k) is not None}


def create_requests(args: argparse.Namespace, template: Tree) -> list[Tree]:
    """The create-vm inputs the command line asks for (one per VM)."""
    requests = []
    for i, name in enumerate(names_of(args.name, args.count)):
        given: Tree = {"tenant": args.tenant, "name": name, **template}
        for leaf, value in (("vnid", args.vnid), ("vlan", args.vlan), ("vm-group", args.group),
                            ("vserver", args.vserver), ("data-center", args.data_center)):
            if value is not None:
                given[leaf] = value
        given["mac-address"] = nth_mac(args.mac, i) if args.mac else \
            derived_mac(args.tenant, name)
        if args.ip:
            given["ip-address"] = [nth_ip(a, i) for a in args.ip]
        if _resources(args):
            given["resources"] = _resources(args)
        given["power-on"] = not args.powered_off
        requests.append(given)
    return requests


def bulk(client: Client, operation: str, requests: list[Tree], label: str,
         quiet: bool) -> list[Tree]:
    """One `operation` per request with progress; each result has result ok|failed."""
    results = []
    with Progress(label, len(requests), enabled=not quiet) as progress:
        for given in requests:
            try:
                out = rpc(client, MODULE, operation, given)
                results.append({"tenant": given["tenant"], "name": given["name"],
                                "result": "ok", **out})
                progress.step(given["name"], note=out.get("vserver", ""))
            except Refused as exc:
                results.append({"tenant": given["tenant"], "name": given["name"],
                                "result": "failed", "error": error_dict(exc.error)})
                progress.step(given["name"], ok=False, note=exc.error.tag)
    return results


def _bulk_report(results: list[Tree], as_json: bool, columns: tuple[tuple[str, str], ...]
                 ) -> int:
    if as_json:
        emit_json(results)
    else:
        rows = [{**r, "error": f"{r['error']['tag']}: {r['error']['message']}"}
                if "error" in r else r for r in results]
        table(rows, (*columns, ("error", "ERROR")))
    return REFUSED if any(r["result"] != "ok" for r in results) else OK


def create(args: argparse.Namespace, client: Client) -> int:
    template = _template(client, args.tenant, args.template) if args.template else {}
    requests = create_requests(args, template)
    if args.count is None:
        out = rpc(client, MODULE, "create-vm", requests[0])
        result = {"tenant": args.tenant, "name": args.name, **out}
        if args.json:
            emit_json(result)
        else:
            fields(_create_fields(result))
        return OK
    results = bulk(client, "create-vm", requests, "create", args.quiet)
    return _bulk_report(results, args.json, (("name", "NAME"), ("result", "RESULT"),
                                             ("vserver", "VSERVER"), ("nve", "NVE"),
                                             ("mac-address", "MAC"), ("state", "STATE")))


def _create_fields(r: Tree) -> list[tuple[str, Any]]:
    return [("vm", f"{r['tenant']}/{r['name']}"), ("state", r.get("state")),
            ("vserver", r.get("vserver")), ("nve", r.get("nve")), ("port", r.get("port")),
            ("vnid", r.get("vnid")), ("mac-address", r.get("mac-address")),
            ("vcenter", r.get("vcenter")), ("data-center", r.get("data-center"))]


# -- list, show, lookup -----------------------------------------------------------------------

def list_rows(vc: Tree) -> list[Tree]:
    """One row per VM profile of the vCenter's state (configured and learned)."""
    rows = []
    for t in entries(vc, "tenants", "tenant"):
        for vm in t.get("vm") or []:
            loc = vm.get("location") or {}
            row = {"tenant": t["name"], "name": vm["name"], "state": vm.get("state"),
                   "vserver": loc.get("vserver") or vm.get("vserver"),
                   "nve": loc.get("nve"), "vnid": vm.get("vnid") or t.get("vnid"),
                   "mac-address": vm.get("mac-address"),
                   "ip-address": vm.get("ip-address") or [],
                   "vm-group": vm.get("vm-group"), "registered": vm.get("registered"),
                   "resources": vm.get("resources"),
                   "monitoring": vm.get("monitoring"), "location": loc}
            rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def list_(args: argparse.Namespace, client: Client) -> int:
    rows = list_rows(state(client, MODULE, "vcenter"))
    rows = [r for r in rows if (args.tenant in (None, r["tenant"])
                                and args.vserver in (None, r["vserver"])
                                and args.state in (None, r["state"]))]
    if args.json:
        emit_json(rows)
    elif rows:
        table(rows, LIST_COLUMNS)
    else:
        print("no VMs")
    return OK


def with_vteps(args: argparse.Namespace, rows: list[Tree]) -> list[Tree]:
    """Fill in vtep-address from the nDirector's mapping table where the vCenter has none.

    Best effort: without an nDirector to ask (no lab, no --ndirector) the rows stay as they
    are.
    """
    missing = [r for r in rows if not r.get("vtep-address") and r.get("vnid")
               and r.get("mac-address") and r.get("state") in ("powered-on", "migrating")]
    if not missing:
        return rows
    try:
        with session(resolve("ndirector", args)) as nd:
            for r in missing:
                try:
                    found = rpc(nd, NDIRECTOR, "lookup",
                                {"vni": r["vnid"], "mac": r["mac-address"]})
                except Refused:
                    continue
                if found.get("vtep-address"):
                    r["vtep-address"] = found["vtep-address"]
    except TargetError:
        pass
    return rows


def show(args: argparse.Namespace, client: Client) -> int:
    found = rpc(client, MODULE, "lookup-vm", {"tenant": args.tenant, "name": args.name})
    if not found.get("vm"):
        raise NotFound(f"no VM {args.tenant}/{args.name}")
    row: Tree = with_vteps(args, [dict(found["vm"][0])])[0]
    detail = next((r for r in list_rows(state(client, MODULE, "vcenter"))
                   if (r["tenant"], r["name"]) == (args.tenant, args.name)), {})
    for key in ("registered", "resources", "monitoring"):
        if detail.get(key) is not None:
            row[key] = detail[key]
    if args.json:
        emit_json(row)
        return OK
    pairs = [(k, row.get(k)) for k in ("tenant", "name", "state", "vcenter", "vserver", "nve",
                                       "vtep-address", "data-center", "port", "vnid", "vlan",
                                       "vm-group", "mac-address", "ip-address", "registered")]
    pairs += [(k, v) for k, v in (row.get("resources") or {}).items()]
    pairs += [(k, v) for k, v in (row.get("monitoring") or {}).items()]
    fields(pairs)
    return OK


def lookup(args: argparse.Namespace, client: Client) -> int:
    given: Tree = {classify(args.key): args.key}
    for leaf, value in (("tenant", args.tenant), ("vnid", args.vnid)):
        if value is not None:
            given[leaf] = value
    rows = with_vteps(args, rpc(client, MODULE, "lookup-vm", given).get("vm") or [])
    if args.json:
        emit_json(rows)
    elif rows:
        table(rows, LOOKUP_COLUMNS)
    if not rows:
        if not args.json:
            print(f"no VM matches {args.key}")
        return REFUSED
    return OK


# -- move, replicate, delete ------------------------------------------------------------------

def move(args: argparse.Namespace, client: Client) -> int:
    given = {"tenant": args.tenant, "name": args.name, "destination-vserver": args.to}
    out = rpc(client, MODULE, "relocate-vm", given)
    if args.json:
        emit_json({"tenant": args.tenant, "name": args.name, **out})
    else:
        print(f"{args.tenant}/{args.name} moved {out.get('source-vserver')} -> "
              f"{out.get('destination-vserver')} (nve {out.get('nve', '-')}, "
              f"{out.get('state')}, {out.get('duration', '?')} ms)")
    return OK


#: replicate-vm's input leaves and the flags that set them (errors name the flags)
REPLICATE_FLAGS = (("replica-mac-address", "--mac"), ("replica-ip-address", "--ip"),
                   ("replica-name", "--as"), ("destination-vserver", "--to"),
                   ("terminate-source", "--terminate-source"))


def in_flags(text: str) -> str:
    """`text` with replicate-vm's leaf names replaced by the command line's flags."""
    for leaf, flag in REPLICATE_FLAGS:
        text = text.replace(leaf, flag)
    return text


def replicate(args: argparse.Namespace, client: Client) -> int:
    if not args.replica and not args.terminate_source:
        raise BadInput("a copy beside its source needs a name: give --as NAME (its MAC is "
                       "derived from the name unless --mac), or --terminate-source")
    try:
        return _replicate(args, client)
    except Refused as exc:
        exc.error.message = in_flags(exc.error.message)
        raise
    except BadInput as exc:
        raise BadInput(in_flags(str(exc))) from None


def _replicate(args: argparse.Namespace, client: Client) -> int:
    given: Tree = {"tenant": args.tenant, "name": args.name, "destination-vserver": args.to}
    if args.replica:
        given["replica-name"] = args.replica
        if not args.terminate_source:
            given["replica-mac-address"] = args.mac or derived_mac(args.tenant, args.replica)
    if args.mac:
        given["replica-mac-address"] = args.mac
    if args.ip:
        given["replica-ip-address"] = args.ip
    if args.terminate_source:
        given["terminate-source"] = True
    out = rpc(client, MODULE, "replicate-vm", given)
    if args.json:
        emit_json({"tenant": args.tenant, "name": args.name, **out})
    else:
        print(f"{args.tenant}/{args.name} replicated to {out.get('destination-vserver')} as "
              f"{out.get('replica-name')} (nve {out.get('nve', '-')}, {out.get('state')}; "
              f"source {out.get('source-state', '-')})")
    return OK


def delete(args: argparse.Namespace, client: Client) -> int:
    names = [n for name in args.name for n in names_of(name, args.count)]
    requests = [{"tenant": args.tenant, "name": n, "delete-profile": not args.keep_profile}
                for n in names]
    if len(requests) == 1:
        out = rpc(client, MODULE, "terminate-vm", requests[0])
        if args.json:
            emit_json({"tenant": args.tenant, "name": names[0], **out})
        else:
            print(f"{args.tenant}/{names[0]} {out.get('state', 'deleted')}"
                  f"{' on ' + out['vserver'] if out.get('vserver') else ''}")
        return OK
    results = bulk(client, "terminate-vm", requests, "delete", args.quiet)
    return _bulk_report(results, args.json, (("name", "NAME"), ("result", "RESULT"),
                                             ("vserver", "VSERVER"), ("state", "STATE")))


# -- argparse ---------------------------------------------------------------------------------

def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    vm = sub.add_parser("vm", help="create, list, move, replicate and delete VMs (vCenter)")
    verbs = vm.add_subparsers(dest="vm_command", required=True, metavar="VERB")

    def verb(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, parents=[common])
        p.set_defaults(func=lambda args: run("vcenter", fn, args))
        return p

    def tenant(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("-t", "--tenant", required=required, help="the VM's tenant")

    p = verb("create", create, "create a VM (or --count N of them); the vCenter places it")
    p.add_argument("name", help="VM name; with --count, NAME-1..NAME-N (or NAME with {n})")
    tenant(p)
    p.add_argument("--count", type=int, metavar="N", help="create N VMs (progress on stderr)")
    p.add_argument("--template", metavar="VM",
                   help="take vnid, vlan and group from this existing VM of the tenant")
    p.add_argument("--mac", help="MAC address (with --count: the first, then +1 each; "
                                 "default: derived from tenant/name)")
    p.add_argument("--ip", action="append", metavar="ADDR",
                   help="IP address (repeatable; with --count: the first, then +1 each)")
    p.add_argument("--vnid", type=int)
    p.add_argument("--vlan", type=int)
    p.add_argument("-g", "--group", help="vm-group (its profile applies)")
    p.add_argument("--vserver", help="place on this vServer (default: the vCenter chooses)")
    p.add_argument("--data-center", help="place in this data center")
    p.add_argument("--vcpus", type=int)
    p.add_argument("--memory", type=int, metavar="MB")
    p.add_argument("--disk", type=int, metavar="GB")
    p.add_argument("--powered-off", action="store_true", help="create without powering on")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    p = verb("list", list_, "list the vCenter's VMs")
    tenant(p, required=False)
    p.add_argument("--vserver", help="only VMs on this vServer")
    p.add_argument("--state", choices=VM_STATES, help="only VMs in this state")

    p = verb("show", show, "everything about one VM")
    p.add_argument("name")
    tenant(p)

    p = verb("lookup", lookup, "find VMs by name, MAC or IP address (lookup-vm)")
    p.add_argument("key", help="a VM name, MAC address or IP address")
    tenant(p, required=False)
    p.add_argument("--vnid", type=int)

    p = verb("move", move, "relocate a running VM to another vServer")
    p.add_argument("name")
    tenant(p)
    p.add_argument("--to", required=True, metavar="VSERVER", help="destination vServer")

    p = verb("replicate", replicate, "run a copy of a VM on another vServer")
    p.add_argument("name")
    tenant(p)
    p.add_argument("--to", required=True, metavar="VSERVER", help="destination vServer")
    p.add_argument("--as", dest="replica", metavar="NAME", help="the copy's name")
    p.add_argument("--mac", help="the copy's MAC (default with --as: derived from its name)")
    p.add_argument("--ip", action="append", metavar="ADDR", help="the copy's IP (repeatable)")
    p.add_argument("--terminate-source", action="store_true",
                   help="terminate the original once the copy runs")

    p = verb("delete", delete, "terminate VMs and forget their profiles")
    p.add_argument("name", nargs="+", help="VM name(s); with --count, NAME-1..NAME-N")
    tenant(p)
    p.add_argument("--count", type=int, metavar="N")
    p.add_argument("--keep-profile", action="store_true",
                   help="terminate but keep the profile (state deleted; needed for "
                        "configured profiles)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
