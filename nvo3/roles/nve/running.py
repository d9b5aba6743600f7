"""The NVE agent's copy of its running configuration, patched entry by entry.

After a full commit the role keeps the engine's ``after`` tree; an edit the engine made in
place names the nodes it touched (:attr:`ConfigChange.edited`), and when they all lie inside
attachments, policies or remote MACs (:func:`touched_entries`) the role reads just those
entries (:meth:`ConfigChange.after_at`) and patches them in here (:meth:`RunningConfig.put`),
at the cost of the edit instead of the whole configuration.  Anything else (a network's own
leaves, its flood list, the local VTEP, a whole list or container created or deleted) is not
an entry edit: the role reads the whole configuration again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from nvo3.common.mac import norm_mac
from nvo3.common.tree import Tree, entries
from nvo3.roles.nve.desired import EntryKey

ATTACHMENT = "/nvo3-nve:nve/attachments/attachment"
POLICY = "/nvo3-nve:nve/policies/policy"
NETWORK = "/nvo3-nve:nve/networks/network"
REMOTE_MAC = "/remote-macs/remote-mac"
_PREDICATE = re.compile(r"\[([A-Za-z_][\w.-]*)=(?:'([^']*)'|\"([^\"]*)\")\]")

#: The kinds of entry an edit may touch and the role follow entry by entry.
KINDS = ("attachment", "policy", "remote-mac")


@dataclass
class TouchedEntries:
    """The entries an edit touched, by kind: (vni, normalised MAC) -> the entry's data path."""

    by_kind: dict[str, dict[EntryKey, str]] = field(
        default_factory=lambda: {k: {} for k in KINDS})

    def keys(self) -> set[EntryKey]:
        """Every touched (vni, MAC), whatever the kind."""
        return {k for touched in self.by_kind.values() for k in touched}


def _predicates(path: str, at: int) -> tuple[dict[str, str], int]:
    """The ``[name='value']`` predicates of `path` from index `at`; where they end."""
    keys: dict[str, str] = {}
    while (m := _PREDICATE.match(path, at)) is not None:
        keys[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        at = m.end()
    return keys, at


def _entry(path: str, prefix: str, names: tuple[str, ...]) -> tuple[dict[str, str], int] | None:
    """The keys of the list entry `prefix` that `path` is inside of (or is), and where the
    entry's path ends; None when `path` is not inside one."""
    if not path.startswith(prefix + "["):
        return None
    keys, end = _predicates(path, len(prefix))
    if set(keys) != set(names) or (end < len(path) and path[end] != "/"):
        return None
    return keys, end


def touched_entries(paths: Iterable[str]) -> TouchedEntries | None:
    """The attachments, policies and remote MACs an edit touched, from the data paths of its
    nodes; None when one of them lies elsewhere (then only the whole configuration tells)."""
    out = TouchedEntries()
    for path in paths:
        for kind, prefix in (("attachment", ATTACHMENT), ("policy", POLICY)):
            found = _entry(path, prefix, ("vni", "mac"))
            if found is not None:
                keys, end = found
                out.by_kind[kind][(int(keys["vni"]), norm_mac(keys["mac"]))] = path[:end]
                break
        else:
            net = _entry(path, NETWORK, ("vni",))
            if net is None:
                return None
            keys, at = net
            rm = _entry(path[at:], REMOTE_MAC, ("mac",))
            if rm is None:
                return None
            mac, end = rm
            key = (int(keys["vni"]), norm_mac(mac["mac"]))
            out.by_kind["remote-mac"][key] = path[:at + end]
    return out


class RunningConfig:
    """The running configuration the role programs (``config``: ``after``'s shape), with
    its attachments, policies and remote MACs by (vni, normalised MAC).

    Built from a whole ``after`` tree, whose containers down to the lists it copies (the
    engine's tree is never changed); entries are replaced, never changed, so an entry a
    caller holds stays as it was.
    """

    def __init__(self, after: Tree) -> None:
        self.config: Tree = {}
        self.nve: Tree | None = None
        self.networks: dict[int, Tree] = {}
        self.by_kind: dict[str, dict[EntryKey, Tree]] = {k: {} for k in KINDS}
        self._lists: dict[str, list[Tree]] = {}          # attachment / policy -> its list
        self._remote_lists: dict[int, list[Tree]] = {}   # vni -> its remote-mac list
        if "nve" not in after:
            self.config = dict(after)
            return
        nve = self.nve = dict(after["nve"])
        self.config = {**after, "nve": nve}
        for kind, container in (("attachment", "attachments"), ("policy", "policies")):
            lst = self._lists[kind] = list(entries(nve, container, kind))
            nve[container] = {**(nve.get(container) or {}), kind: lst}
            self.by_kind[kind] = {(int(e["vni"]), norm_mac(e["mac"])): e for e in lst}
        nets = []
        for net in entries(nve, "networks", "network"):
            vni = int(net["vni"])
            lst = self._remote_lists[vni] = list(entries(net, "remote-macs", "remote-mac"))
            net = {**net, "remote-macs": {**(net.get("remote-macs") or {}), "remote-mac": lst}}
            nets.append(net)
            self.networks[vni] = net
            self.by_kind["remote-mac"].update({(vni, norm_mac(e["mac"])): e for e in lst})
        nve["networks"] = {**(nve.get("networks") or {}), "network": nets}

    def put(self, kind: str, key: EntryKey, entry: Tree | None) -> None:
        """Make the entry of `kind` at `key` `entry` (None: remove it)."""
        index = self.by_kind[kind]
        lst = self._remote_lists[key[0]] if kind == "remote-mac" else self._lists[kind]
        old = index.get(key)
        if old is not None:
            at = next(i for i, e in enumerate(lst) if e is old)
            if entry is None:
                del lst[at]
                del index[key]
                return
            lst[at] = entry
        elif entry is not None:
            lst.append(entry)
        if entry is not None:
            index[key] = entry

    def can_put(self, touched: TouchedEntries) -> bool:
        """Whether `touched` can be patched in: the configuration has its lists (each
        remote MAC's network among them)."""
        return self.nve is not None and all(
            vni in self._remote_lists for vni, _mac in touched.by_kind["remote-mac"])
