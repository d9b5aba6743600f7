"""The NVE's running configuration -> the kernel state it asks for (pure, no I/O).

Input is the libyang ``print_dict`` tree of the ``nvo3-nve`` running datastore (prefixes
stripped, defaults included); output is a :class:`Derived`: the dataplane
:class:`~nvo3.dataplane.model.DesiredState`, the configured entries that are deliberately
not programmed (with the reason, reported as ``pending``), and the :class:`Problem` s that
YANG cannot catch.  The caller decides what a problem means: a commit is refused with the
first one, a reconcile on start programs everything else and reports them as ``failed``.

Mapping (see "Kernel model" in design.md):

* network ``vni`` -> :class:`Network` (local VTEP, udp-port, flood-mode);
* remote-mac -> :class:`RemoteMac` (its IPs only with arp-nd-suppression);
* flood-list vtep -> :class:`FloodEntry` (not with flood-mode ``none``: kept, pending);
* attachment ``activated`` -> :class:`Port` (VLAN from the attachment, else its policy);
  ``associated`` (RFC 8394: context known, no forwarding yet) is not enslaved and is pending;
  its port need not exist yet (a relocation destination), an activated one's port must;
* policy (vni, mac) -> :class:`Policy` of the activated attachment with the same key.

ACL translation (YANG: both directions, ``source`` = sender; dataplane: per direction seen
from the VM, one peer prefix, one destination port).  A rule's prefix on the VM's own side is
evaluated here against the attachment's addresses: containing all of them, the rule applies
in that direction; none of them, it never matches there.  Anything the nftables layer cannot
express exactly (MAC matches, source ports, port ranges, IPv6 prefixes, a prefix holding
only some of the VM's addresses) is refused as ``operation-not-supported`` rather than
enforced approximately.  ``default-action deny`` becomes a final drop in both directions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nvo3.common.mac import norm_mac
from nvo3.common.tree import Tree, entries
from nvo3.dataplane.model import (
    BRIDGE_PREFIX,
    VXLAN_PREFIX,
    AclRule,
    Action,
    DesiredState,
    Direction,
    FloodEntry,
    FloodMode,
    Network,
    Policy,
    Port,
    RemoteMac,
    norm_ip,
)

StatusKey = tuple[str, object]  # (dataplane kind, tracker key)
EntryKey = tuple[int, str]      # (vni, normalised MAC): an attachment, policy or remote MAC
MIN_BURST = 1514


@dataclass(frozen=True)
class Problem:
    """A configured entry that cannot be programmed; maps onto one rpc-error."""

    key: StatusKey
    message: str
    tag: str = "invalid-value"
    path: str | None = None


@dataclass
class Derived:
    """What the configuration asks of the kernel."""

    state: DesiredState
    pending: dict[StatusKey, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _att_path(vni: int, mac: str, leaf: str = "") -> str:
    return (f"/nvo3-nve:nve/attachments/attachment[vni='{vni}'][mac='{mac}']"
            + (f"/{leaf}" if leaf else ""))


def _pol_path(vni: int, mac: str) -> str:
    return f"/nvo3-nve:nve/policies/policy[vni='{vni}'][mac='{mac}']"


def network_key(vni: int) -> StatusKey:
    """Status key of a network."""
    return ("network", int(vni))


def remote_mac_key(vni: int, mac: str) -> StatusKey:
    """Status key of a remote MAC."""
    return ("remote_mac", (int(vni), norm_mac(mac)))


def flood_key(vni: int, address: str) -> StatusKey:
    """Status key of a flood-list VTEP."""
    return ("flood", (int(vni), norm_ip(address)))


def port_key(port: str) -> StatusKey:
    """Status key of an attachment (its port)."""
    return ("port", port)


def policy_key(port: str) -> StatusKey:
    """Status key of a policy (the port it is enforced on)."""
    return ("policy", port)


class _Unsupported(Exception):
    pass


#: Per direction seen from the VM: the YANG leaf of the VM's own side, the peer's side.
_DIRECTIONS: tuple[tuple[Direction, str, str], ...] = (
    ("out", "source-ip-prefix", "destination-ip-prefix"),
    ("in", "destination-ip-prefix", "source-ip-prefix"))


def acl_rules(acl: Tree | None, vm_ips: tuple[str, ...]) -> tuple[AclRule, ...]:
    """The dataplane rules of a YANG ``acl`` for a VM with addresses ``vm_ips``."""
    acl = acl or {}
    ips = [ipaddress.ip_address(i) for i in vm_ips]
    out: list[AclRule] = []
    for r in sorted(acl.get("rule") or [], key=lambda r: int(r["sequence-id"])):
        seq = r["sequence-id"]
        bad = [f for f in ("source-mac", "destination-mac", "source-port") if f in r]
        dport = r.get("destination-port")
        if dport and int(dport.get("upper-port", dport["lower-port"])) != int(dport["lower-port"]):
            bad.append("destination-port range")
        for f in ("source-ip-prefix", "destination-ip-prefix"):
            if f in r and ipaddress.ip_network(r[f], strict=False).version != 4:
                bad.append(f"IPv6 {f}")
        if bad:
            raise _Unsupported(f"ACL rule {seq}: {', '.join(bad)} not supported by this NVE "
                               "(it matches IPv4 prefixes, protocol and one destination port)")
        action: Action = "accept" if r["action"] == "permit" else "drop"
        proto = r.get("protocol", "any")
        port = int(dport["lower-port"]) if dport else None
        for direction, own_f, peer_f in _DIRECTIONS:
            if own_f in r:
                net = ipaddress.ip_network(r[own_f], strict=False)
                inside = [ip in net for ip in ips]
                if not any(inside):
                    continue  # never matches in this direction
                if not all(inside):
                    raise _Unsupported(f"ACL rule {seq}: {own_f} {r[own_f]} holds only some "
                                       "of the VM's addresses")
            out.append(AclRule(action, direction, proto, r.get(peer_f), port))
    if acl.get("default-action") == "deny":
        out += [AclRule("drop", "out"), AclRule("drop", "in")]
    return tuple(out)


def _burst_bytes(rate: Tree) -> int:
    if "burst" in rate:
        return int(rate["burst"]) * 1024
    return max(MIN_BURST, int(rate["rate"]) * 1000 // 8 // 100)  # 10 ms at the rate


def derive(config: Tree, links: set[str] | None = None, netns: str | None = None) -> Derived:
    """Desired kernel state of ``config``; ``links``: interface names in the namespace
    (None = do not check that ports exist)."""
    nve = config.get("nve") or {}
    where = f"namespace {netns}" if netns else "the root namespace"
    d = Derived(DesiredState())
    local = nve.get("local-vtep-address")
    udp = int(nve.get("udp-port", 4789))
    networks, floods, remotes = [], [], []
    # RFC 8394 mobility: a VM activated here whose port exists is forwarded locally even while
    # a remote mapping for it is still configured (the nDirector withdraws it next); an
    # associated VM, or one whose port is gone (it left), leaves the remote mapping in force.
    activated_here = {(int(a["vni"]), norm_mac(a["mac"]))
                      for a in entries(nve, "attachments", "attachment")
                      if _forwards_here(a, links)}
    for net in entries(nve, "networks", "network"):
        vni = int(net["vni"])
        if local is None:  # YANG's must refuses this; keep the function total
            d.problems.append(Problem(network_key(vni), f"network {vni} needs "
                                      "local-vtep-address"))
            continue
        mode: FloodMode = "none" if net.get("flood-mode") == "none" else "head-end"
        networks.append(Network(vni, local, udp, mode))
        suppress = _suppresses(net)
        for rm in entries(net, "remote-macs", "remote-mac"):
            remote = _remote_mac(d, vni, rm, suppress, activated_here)
            if remote is not None:
                remotes.append(remote)
        for vt in entries(net, "flood-list", "vtep"):
            if mode == "none":
                d.pending[flood_key(vni, vt["address"])] = "flood-mode none: kept, not programmed"
            else:
                floods.append(FloodEntry(vni, vt["address"]))
    policies_cfg = {(int(p["vni"]), norm_mac(p["mac"])): p
                    for p in entries(nve, "policies", "policy")}
    ports: list[Port] = []
    policies: list[Policy] = []
    for att in entries(nve, "attachments", "attachment"):
        _attachment(d, att, policies_cfg.get((int(att["vni"]), norm_mac(att["mac"]))), links,
                    where, ports, policies)
    d.state = DesiredState(networks=tuple(networks), ports=tuple(ports), floods=tuple(floods),
                           remote_macs=tuple(remotes), policies=tuple(policies))
    return d


def derive_entries(nve: Tree, attachments: dict[EntryKey, Tree],
                   policies: dict[EntryKey, Tree], remote_macs: dict[EntryKey, Tree],
                   keys: Iterable[EntryKey], links: set[str] | None = None,
                   netns: str | None = None) -> Derived:
    """What :func:`derive` gives for the attachments, policies and remote MACs of ``keys``
    (vni, normalised MAC) only: their ports, policies and remote MACs, pending and problems.
    ``nve``: the configuration's ``nve`` (its networks already derived, unchanged);
    ``attachments``, ``policies``, ``remote_macs``: every configured entry by key.  The same
    functions as :func:`derive` decide each entry, so the two cannot disagree."""
    where = f"namespace {netns}" if netns else "the root namespace"
    nets = {int(n["vni"]): n for n in entries(nve, "networks", "network")}
    d = Derived(DesiredState())
    ports: list[Port] = []
    pols: list[Policy] = []
    remotes: list[RemoteMac] = []
    for key in keys:
        att = attachments.get(key)
        rm = remote_macs.get(key)
        if rm is not None and nve.get("local-vtep-address") is not None:
            here = {key} if att is not None and _forwards_here(att, links) else set()
            remote = _remote_mac(d, key[0], rm, _suppresses(nets[key[0]]), here)
            if remote is not None:
                remotes.append(remote)
        if att is not None:
            _attachment(d, att, policies.get(key), links, where, ports, pols)
    d.state = DesiredState(ports=tuple(ports), remote_macs=tuple(remotes), policies=tuple(pols))
    return d


def _forwards_here(att: Tree, links: set[str] | None) -> bool:
    """An activated attachment whose port exists (``links`` None: not checked)."""
    return att.get("state", "associated") == "activated" and (links is None
                                                              or att["port"] in links)


def _suppresses(net: Tree) -> bool:
    """Whether a network answers ARP/ND for its remote MACs (their IPs are installed)."""
    return net.get("arp-nd-suppression", True) not in (False, "false")


def _remote_mac(d: Derived, vni: int, rm: Tree, suppress: bool,
                activated_here: set[EntryKey]) -> RemoteMac | None:
    """A configured remote MAC's kernel object, or None (pending: attached here)."""
    mac = norm_mac(rm["mac"])
    if (vni, mac) in activated_here:
        d.pending[remote_mac_key(vni, mac)] = ("attached locally: the local "
                                              "attachment takes precedence")
        return None
    return RemoteMac(vni, mac, rm["remote-vtep"],
                     tuple(rm.get("ip-address") or ()) if suppress else ())


def _attachment(d: Derived, att: Tree, pol: Tree | None, links: set[str] | None, where: str,
                ports: list[Port], policies: list[Policy]) -> None:
    """An attachment's port and policy (appended), or why not (``d``'s pending, problems)."""
    vni, mac, name = int(att["vni"]), norm_mac(att["mac"]), att["port"]
    key = port_key(name)
    if name.startswith((VXLAN_PREFIX, BRIDGE_PREFIX)):
        d.problems.append(Problem(key, f"port {name} is a name nvo3 uses for its own "
                                  "devices", path=_att_path(vni, att["mac"], "port")))
        return
    if att.get("state", "associated") != "activated":
        d.pending[key] = "associated: waits for activation"
        if pol is not None:
            d.pending[policy_key(name)] = "waits for its attachment to be activated"
        return
    if links is not None and name not in links:
        d.problems.append(Problem(key, f"port {name} does not exist in {where}",
                                  path=_att_path(vni, att["mac"], "port")))
        return
    vlan = att.get("vlan", pol.get("vlan") if pol else None)
    ips = tuple(att.get("ip-address") or ())
    port = Port(name, vni, None if vlan is None else int(vlan), mac, ips)
    ports.append(port)
    if pol is None:
        return
    try:
        rules = acl_rules(pol.get("acl"), port.ips)
    except _Unsupported as exc:
        d.problems.append(Problem(policy_key(name), str(exc), "operation-not-supported",
                                  _pol_path(vni, pol["mac"])))
        return
    rate = pol.get("rate-limit")
    if rules or rate:
        policies.append(Policy(name, rules, int(rate["rate"]) if rate else None,
                               _burst_bytes(rate) if rate else Policy.burst))


def attachment_info(att: Tree) -> Tree:
    """The attachment-info fields of a notification, from a configured attachment."""
    out: Tree = {"vni": int(att["vni"]), "mac": att["mac"]}      # in schema order
    if "vm-id" in att:
        out["vm-id"] = att["vm-id"]
    if att.get("ip-address"):
        out["ip-address"] = list(att["ip-address"])
    for leaf in ("vlan", "port", "state"):
        if leaf in att:
            out[leaf] = att[leaf]
    return out


def attachments_of(config: Tree) -> dict[tuple[int, str], Tree]:
    """Configured attachments keyed by (vni, normalised MAC)."""
    return {(int(a["vni"]), norm_mac(a["mac"])): a
            for a in entries(config.get("nve"), "attachments", "attachment")}


def attachment_events(before: Tree, after: Tree) -> list[tuple[str, Tree]]:
    """(notification name, content) for every attachment added, changed or removed."""
    return attachment_changes(attachments_of(before), attachments_of(after))


def attachment_changes(old: Mapping[EntryKey, Tree | None],
                       new: Mapping[EntryKey, Tree | None]) -> list[tuple[str, Tree]]:
    """(notification name, content) for every attachment added, changed or removed between
    ``old`` and ``new`` (by key; None: no attachment)."""
    events: list[tuple[str, Tree]] = []
    for key, att in new.items():
        was = old.get(key)
        if att is None:
            continue
        if was is None:
            events.append(("attachment-added", attachment_info(att)))
        elif attachment_info(was) != attachment_info(att):
            content = attachment_info(att)
            prev = was.get("state", "associated")
            if prev != att.get("state", "associated"):
                content["previous-state"] = prev
            events.append(("attachment-changed", content))
    events += [("attachment-removed", attachment_info(was))
               for key, was in old.items() if was is not None and new.get(key) is None]
    return events


def batch_entry(name: str, content: Tree) -> Tree:
    """One ``change`` entry of an attachments-changed notification from an individual
    notification (name, content) of :func:`attachment_events` (schema order: keys first)."""
    entry = {k: v for k, v in content.items() if k != "previous-state"}
    entry["event"] = name.removeprefix("attachment-")
    if "previous-state" in content:
        entry["previous-state"] = content["previous-state"]
    return entry
