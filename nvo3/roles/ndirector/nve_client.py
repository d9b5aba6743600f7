"""The one place where the nDirector touches an NVE's NETCONF XML.

The client (:mod:`nvo3.netconf.client.session`) returns lxml elements; the nDirector's logic works on
dicts and small dataclasses only. This adapter turns an NVE's configuration and attachment
notifications into dicts, and builds the edit-config payloads the nDirector sends from dicts.

* Reading: an NVE's running ``<nve>`` is parsed with libyang (:func:`nvo3.roles.peers.codec.data_tree`,
  the context every role's peer adapter shares) and printed as a dict, like the engine hands
  trees to roles.
* Notifications are flat (a few leaves and one leaf-list per attachment): read with lxml
  directly, one notification or the ``change`` entries of an attachments-changed.
* The nDirector subscribes to the attachment notifications only (:func:`attachment_filter`):
  the NVE's other notifications (a netconf-config-change after every push) would cost both
  sides a message per push for nothing.
* Writing: :class:`NveEdit` says what to merge and remove, or which subtrees to replace
  whole; :func:`edit_tree` turns it into the codec's dict shape and the codec's text builder
  (:func:`nvo3.roles.peers.codec.build_config_text`) into one ``<config>`` per push.
  :class:`EditTexts` builds a small edit once when several NVEs get the same one (a change
  of one mapping goes to every NVE of its VNI).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from nvo3.common.mac import norm_mac
from nvo3.common.names import NVE, NVE_NS
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client
from nvo3.netconf.proto.xml import NOTIF_NS
from nvo3.roles.peers import codec
from nvo3.roles.peers.codec import OPERATION

ATTACHMENT_EVENTS = ("attachment-added", "attachment-changed", "attachment-removed")
BATCH_EVENT = "attachments-changed"      # every change of one bulk commit
_LEAF_LISTS = {"ip-address"}
_INTS = {"vni", "vlan"}

Key = tuple[int, str]


# reading ------------------------------------------------------------------------------------
@dataclass
class NveConfig:
    """What the nDirector needs from an NVE's running configuration."""

    attachments: list[Tree] = field(default_factory=list)
    remote_macs: dict[Key, Tree] = field(default_factory=dict)
    floods: dict[int, set[str]] = field(default_factory=dict)
    networks: set[int] = field(default_factory=set)
    policies: dict[Key, Tree] = field(default_factory=dict)


def parse_nve_config(data: etree._Element) -> NveConfig:
    """The <data> of a get-config of an NVE, as an :class:`NveConfig`."""
    node = data.find(f"{{{NVE_NS}}}nve")
    out = NveConfig()
    if node is None:
        return out
    nve = codec.data_tree(etree.tostring(node).decode()).get("nve") or {}
    for net in entries(nve, "networks", "network"):
        vni = int(net["vni"])
        out.networks.add(vni)
        for rm in entries(net, "remote-macs", "remote-mac"):
            rm = {**rm, "mac": norm_mac(rm["mac"])}
            out.remote_macs[(vni, rm["mac"])] = rm
        out.floods[vni] = {v["address"] for v in entries(net, "flood-list", "vtep")}
    for att in entries(nve, "attachments", "attachment"):
        out.attachments.append({**att, "vni": int(att["vni"]), "mac": norm_mac(att["mac"])})
    for pol in entries(nve, "policies", "policy"):
        out.policies[(int(pol["vni"]), norm_mac(pol["mac"]))] = pol
    return out


def read_nve_config(client: Client) -> NveConfig:
    """get-config of the NVE's running <nve>."""
    flt = f'<nve xmlns="{NVE_NS}"/>'
    return parse_nve_config(client.get_config("running", filter=("subtree", flt)))


def attachment_filter() -> list[str]:
    """The subtree filter of the nDirector's subscription: the notifications
    :func:`parse_notification` reads, nothing else."""
    return [f'<{name} xmlns="{NVE_NS}"/>' for name in (*ATTACHMENT_EVENTS, BATCH_EVENT)]


@dataclass(frozen=True)
class AttachmentEvent:
    """One attachment notification of an NVE."""

    name: str                      # attachment-added | attachment-changed | attachment-removed
    time: float                    # eventTime, seconds since the epoch
    content: Tree


def parse_notification(message: etree._Element) -> list[AttachmentEvent]:
    """The attachment events of a <notification>: one for attachment-added/-changed/-removed,
    one per ``change`` of an attachments-changed (a bulk commit), none for anything else."""
    body = next((c for c in message if isinstance(c.tag, str)
                 and etree.QName(c).namespace == NVE_NS), None)
    if body is None:
        return []
    name = etree.QName(body).localname
    if name != BATCH_EVENT and name not in ATTACHMENT_EVENTS:
        return []
    when = message.findtext(f"{{{NOTIF_NS}}}eventTime") or ""
    try:
        t = datetime.fromisoformat(when.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        t = 0.0
    if name != BATCH_EVENT:
        return [AttachmentEvent(name, t, _content(body))]
    out = []
    for change in body.iterchildren(f"{{{NVE_NS}}}change"):
        content = _content(change)
        event = content.pop("event", "")
        if f"attachment-{event}" in ATTACHMENT_EVENTS:
            out.append(AttachmentEvent(f"attachment-{event}", t, content))
    return out


def _content(body: etree._Element) -> Tree:
    content: Tree = {}
    for leaf in body:
        if not isinstance(leaf.tag, str):
            continue
        name, text = etree.QName(leaf).localname, (leaf.text or "").strip()
        if name in _LEAF_LISTS:
            content.setdefault(name, []).append(text)
        elif name in _INTS:
            content[name] = int(text)
        else:
            content[name] = norm_mac(text) if name == "mac" else text
    return content


# writing ------------------------------------------------------------------------------------
@dataclass
class NetworkEdit:
    """Changes of one network's remote-macs and flood-list."""

    replace: bool = False          # replace both subtrees with exactly what is below
    macs: dict[str, Tree] = field(default_factory=dict)     # mac -> remote-mac entry (merge)
    remove_macs: set[str] = field(default_factory=set)
    vteps: set[str] = field(default_factory=set)
    remove_vteps: set[str] = field(default_factory=set)


@dataclass
class NveEdit:
    """One edit-config for one NVE."""

    networks: dict[int, NetworkEdit] = field(default_factory=dict)
    policies: dict[Key, Tree] = field(default_factory=dict)   # merged (replace per entry)
    remove_policies: set[Key] = field(default_factory=set)
    replace_policies: bool = False     # the policies container becomes exactly `policies`

    def network(self, vni: int) -> NetworkEdit:
        return self.networks.setdefault(vni, NetworkEdit())

    def __bool__(self) -> bool:
        return bool(self.networks or self.policies or self.remove_policies
                    or self.replace_policies)

    def size(self) -> int:
        return sum(len(n.macs) + len(n.remove_macs) + len(n.vteps) + len(n.remove_vteps)
                   for n in self.networks.values()) + len(self.policies) + \
            len(self.remove_policies)


_REMOTE_ORDER = ("ip-address", "remote-vtep", "remote-nve", "sequence-number", "sticky")
_REPLACE, _REMOVE = {OPERATION: "replace"}, {OPERATION: "remove"}


def _remote_mac(mac: str, entry: Tree, op: Tree) -> Tree:
    """One remote-mac entry in schema order (key first)."""
    node: Tree = {**op, "mac": mac}
    for leaf in _REMOTE_ORDER:
        value = entry.get(leaf)
        if value is not None:
            node[leaf] = value
    return node


def _network(vni: int, ne: NetworkEdit) -> Tree:
    node: Tree = {"vni": vni}
    if ne.replace or ne.macs or ne.remove_macs:
        op = {} if ne.replace else _REPLACE
        macs = [_remote_mac(mac, ne.macs[mac], op) for mac in sorted(ne.macs)]
        macs += [{**_REMOVE, "mac": mac} for mac in sorted(ne.remove_macs)]
        node["remote-macs"] = {**(_REPLACE if ne.replace else {}), "remote-mac": macs}
    if ne.replace or ne.vteps or ne.remove_vteps:
        vteps = [{"address": v} for v in sorted(ne.vteps)]
        vteps += [{**_REMOVE, "address": v} for v in sorted(ne.remove_vteps)]
        node["flood-list"] = {**(_REPLACE if ne.replace else {}), "vtep": vteps}
    return node


def edit_tree(edit: NveEdit) -> Tree:
    """The `{nve: ...}` tree of one edit (codec shape, OPERATION markers, schema order)."""
    nve: Tree = {}
    if edit.networks:
        nve["networks"] = {"network": [_network(vni, edit.networks[vni])
                                       for vni in sorted(edit.networks)]}
    if edit.policies or edit.remove_policies or edit.replace_policies:
        op = {} if edit.replace_policies else _REPLACE
        policies = [{**op, "vni": vni, "mac": mac,
                     **{k: v for k, v in body.items() if k not in ("vni", "mac")}}
                    for (vni, mac), body in sorted(edit.policies.items())]
        policies += [{**_REMOVE, "vni": vni, "mac": mac}
                     for vni, mac in sorted(edit.remove_policies - set(edit.policies))]
        nve["policies"] = {**(_REPLACE if edit.replace_policies else {}), "policy": policies}
    return {"nve": nve}


def build_edit_text(edit: NveEdit) -> str:
    """The <config> of one edit-config, by the codec's text builder (every value escaped;
    the values were validated when they came in, and a 7,500-entry resync is about ten times
    cheaper this way than through libyang)."""
    return codec.build_config_text(NVE, edit_tree(edit))


def _entry_signature(mac: str, entry: Tree) -> tuple[object, ...]:
    """What of a remote-mac entry its text shows (the leaves of :func:`_remote_mac`)."""
    ips = entry.get("ip-address")
    return (mac, tuple(ips) if ips is not None else None,
            *(entry.get(leaf) for leaf in _REMOTE_ORDER[1:]))


def edit_signature(edit: NveEdit) -> Hashable:
    """A key equal for two edits exactly when :func:`build_edit_text` gives them the same
    text (the text sorts what the edit holds in sets and dicts, so their order is not in it)."""
    return (
        tuple(sorted((vni, ne.replace,
                      frozenset(_entry_signature(mac, e) for mac, e in ne.macs.items()),
                      frozenset(ne.remove_macs), frozenset(ne.vteps), frozenset(ne.remove_vteps))
                     for vni, ne in edit.networks.items())),
        frozenset((key, _policy_signature(body)) for key, body in edit.policies.items()),
        frozenset(edit.remove_policies), edit.replace_policies)


def _policy_signature(value: object) -> Hashable:
    if isinstance(value, dict):
        return tuple((k, _policy_signature(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_policy_signature(v) for v in value)
    return value


class EditTexts:
    """The text of each distinct small edit, built once: the pushes of one change to the
    NVEs of a VN are mostly the same edit, sent by one push worker per NVE at the same time.
    Bounded (the newest `capacity` edits); an edit of more than `max_size` entries (a resync)
    is built for its NVE alone. Thread-safe."""

    def __init__(self, capacity: int = 64, max_size: int = 64) -> None:
        self.capacity, self.max_size = capacity, max_size
        self._texts: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()

    def text(self, edit: NveEdit) -> str:
        """The ``<config>`` of `edit` (:func:`build_edit_text`)."""
        if edit.size() > self.max_size or any(ne.replace for ne in edit.networks.values()):
            return build_edit_text(edit)
        key = edit_signature(edit)
        with self._lock:      # held while building: the other workers wait for this text
            text = self._texts.get(key)
            if text is None:
                text = self._texts[key] = build_edit_text(edit)
                if len(self._texts) > self.capacity:
                    self._texts.popitem(last=False)
            else:
                self._texts.move_to_end(key)
            return text


_texts = EditTexts()
_parsers = threading.local()


def _config_element(text: str) -> etree._Element:
    """`text` parsed by this thread's own parser. Given the text, ncclient would parse it
    with its one module-wide parser, whose lock makes the push workers of a change to many
    NVEs wait for each other (and for whichever of them waits for the GIL)."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(resolve_entities=False, no_network=True,
                                                   huge_tree=True)
    return etree.fromstring(text, parser)


def push(client: Client, edit: NveEdit) -> None:
    """Send one edit-config to the NVE's running datastore (raises on rpc-error)."""
    client.edit_config(_config_element(_texts.text(edit)), target="running")
