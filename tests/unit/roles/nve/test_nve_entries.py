"""An NVE agent applying in-place edits entry by entry equals one that derives the whole
configuration (differential).

Two roles, each on its own in-memory kernel, take the same random sequence of edits of
attachments, policies and remote MACs: the first as a full change (``after`` only), the
second as an edit the engine made in place (the touched entries' data paths and
``after_at``), sometimes with link events to check first.  After every edit both accepted it
or both refused it (same error tag, and the same message when one entry is wrong), and both
kernels, desired states, statuses and attachment notifications (in any order) are the same;
the entry-by-entry path must really be taken.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest

from nvo3.dataplane.fake import FakeKernel
from nvo3.netconf.server.role_api import ApplyError, ConfigChange
from nvo3.roles.nve.role import NveRole
from nvo3.roles.nve.running import touched_entries

Tree = dict[str, Any]
VNIS = (100, 200)
MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 7)]
PORTS = [f"tap{i}" for i in range(6)]           # tap4, tap5 do not exist in the kernel
VTEPS = ("198.18.0.2", "198.18.0.3")
ATT = "/nvo3-nve:nve/attachments/attachment[vni='{}'][mac='{}']"
POL = "/nvo3-nve:nve/policies/policy[vni='{}'][mac='{}']"
RM = "/nvo3-nve:nve/networks/network[vni='{}']/remote-macs/remote-mac[mac='{}']"


class Notes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Tree]] = []

    def notify(self, module: str, name: str, content: Tree) -> None:
        self.sent.append((name, content))

    def notify_batch(self, module: str, name: str, contents: list[Tree]) -> None:
        self.sent += [(name, c) for c in contents]


def _base() -> Tree:
    nets = [{"vni": v, "flood-mode": "head-end-replication", "arp-nd-suppression": v == 100,
             "remote-macs": {"remote-mac": []},
             "flood-list": {"vtep": [{"address": VTEPS[0]}]}} for v in VNIS]
    return {"nve": {"local-vtep-address": "198.18.0.1", "udp-port": 4789,
                    "networks": {"network": nets}, "attachments": {"attachment": []},
                    "policies": {"policy": []}}}


def _find(lst: list[Tree], **keys: Any) -> int | None:
    return next((i for i, e in enumerate(lst) if all(e[k] == v for k, v in keys.items())), None)


def _edit(rng: random.Random, config: Tree) -> tuple[Tree, list[str]]:
    """A random edit of 1-3 entries: the configuration after it and the touched paths."""
    after = copy.deepcopy(config)
    nve = after["nve"]
    paths = []
    for _ in range(rng.randrange(1, 4)):
        vni, mac = rng.choice(VNIS), rng.choice(MACS)
        kind = rng.choice(["attachment", "attachment", "policy", "remote-mac"])
        if kind == "attachment":
            lst, path = nve["attachments"]["attachment"], ATT.format(vni, mac)
            used = {a["port"] for a in lst if (a["vni"], a["mac"]) != (vni, mac)}
            free = [p for p in PORTS if p not in used]
            entry: Tree | None = None if rng.random() < 0.25 or not free else {
                "vni": vni, "mac": mac, "port": rng.choice(free),
                "state": rng.choice(["activated", "associated"]),
                **({"vlan": rng.randrange(1, 5)} if rng.random() < 0.3 else {}),
                **({"ip-address": ["198.19.0.1"]} if rng.random() < 0.5 else {})}
        elif kind == "policy":
            lst, path = nve["policies"]["policy"], POL.format(vni, mac)
            entry = None if rng.random() < 0.3 else {
                "vni": vni, "mac": mac,
                **({"vlan": rng.randrange(5, 9)} if rng.random() < 0.5 else {}),
                **({"rate-limit": {"rate": rng.choice([1000, 5000])}}
                   if rng.random() < 0.6 else {})}
        else:
            net = next(n for n in nve["networks"]["network"] if n["vni"] == vni)
            lst, path = net["remote-macs"]["remote-mac"], RM.format(vni, mac)
            entry = None if rng.random() < 0.3 else {
                "mac": mac, "remote-vtep": rng.choice(VTEPS),
                **({"ip-address": ["198.19.9.9"]} if rng.random() < 0.5 else {})}
        keys = {"mac": mac} if kind == "remote-mac" else {"vni": vni, "mac": mac}
        at = _find(lst, **keys)
        if at is not None and entry is None:
            del lst[at]
        elif at is not None:
            lst[at] = entry
        elif entry is not None:
            lst.append(entry)
        else:
            continue
        paths.append(path)
    return after, paths


def _after_at(after: Tree, path: str) -> Tree | None:
    """The entry at one of the paths `_edit` makes, looked up in `after`."""
    touched = touched_entries([path])
    assert touched is not None
    nve = after["nve"]
    for kind, found in touched.by_kind.items():
        for (vni, mac), _ in found.items():
            if kind == "attachment":
                at = _find(nve["attachments"]["attachment"], vni=vni, mac=mac)
                return None if at is None else nve["attachments"]["attachment"][at]
            if kind == "policy":
                at = _find(nve["policies"]["policy"], vni=vni, mac=mac)
                return None if at is None else nve["policies"]["policy"][at]
            net = next(n for n in nve["networks"]["network"] if n["vni"] == vni)
            lst = net["remote-macs"]["remote-mac"]
            at = _find(lst, mac=mac)
            return None if at is None else lst[at]
    raise AssertionError(path)


def _role(kernel: FakeKernel, notes: Notes) -> NveRole:
    role = NveRole(netns="h1", kernel_factory=lambda _ns: kernel, monitor=False)
    role.start(notes)
    role.apply(ConfigChange(dict, dict))
    return role


def _outcome(role: NveRole, change: ConfigChange) -> tuple[str, str] | None:
    try:
        role.apply(change)
    except ApplyError as exc:
        return exc.tag, str(exc)
    return None


def _statuses(role: NveRole) -> list[str]:
    nve = role.state().get("nvo3-nve", {}).get("nve", {})
    out = []
    for net in nve.get("networks", {}).get("network", []):
        out += [f"rm {net['vni']} {r['mac']} {r['programming-status']} "
                f"{r.get('programming-reason')}"
                for r in net.get("remote-macs", {}).get("remote-mac", [])]
    for kind, container in (("attachment", "attachments"), ("policy", "policies")):
        out += [f"{kind} {e['vni']} {e['mac']} {e.get('programming-status')} "
                f"{e.get('programming-reason')}"
                for e in nve.get(container, {}).get(kind, [])]
    return sorted(out)


def _changes(sent: list[tuple[str, Tree]]) -> list[str]:
    """The notifications sent, each attachment change alone, in a canonical order (a batch
    lists them in configuration order, which the entry-by-entry path does not know)."""
    out = []
    for name, content in sent:
        if name == "attachments-changed":
            out += [f"batch {c!r}" for c in content["change"]]
        else:
            out.append(f"{name} {content!r}")
    return sorted(out)


@pytest.fixture
def pair() -> Iterator[tuple[NveRole, NveRole, FakeKernel, FakeKernel, Notes, Notes]]:
    kernels = [FakeKernel(ports=tuple(PORTS[:4])) for _ in range(2)]
    notes = [Notes(), Notes()]
    roles = [_role(k, n) for k, n in zip(kernels, notes, strict=True)]
    yield roles[0], roles[1], kernels[0], kernels[1], notes[0], notes[1]
    for r in roles:
        r.stop()


@pytest.mark.parametrize("seed", range(12))
def test_entry_by_entry_equals_the_whole_derivation(seed: int, pair: Any) -> None:
    full, entry, k_full, k_entry, n_full, n_entry = pair
    rng = random.Random(seed)
    config = _base()
    for role in (full, entry):
        role.apply(ConfigChange(dict, lambda: copy.deepcopy(config)))
    refused = 0
    for _step in range(120):
        after, paths = _edit(rng, config)
        if not paths:
            continue
        sent = len(n_full.sent), len(n_entry.sent)
        if rng.random() < 0.2:        # link events came (the echo of the agent's own change)
            entry._links_dirty.set()
        a = _outcome(full, ConfigChange(lambda c=config: c, lambda a=after: a))
        b = _outcome(entry, ConfigChange(lambda c=config: c, lambda: pytest.fail("read whole"),
                                         paths, lambda p, a=after: _after_at(a, p)))
        assert (a is None) == (b is None), (a, b)
        if a is not None and b is not None:
            refused += 1
            assert a[0] == b[0]
            if "more)" not in a[1]:
                assert a[1] == b[1]
        else:
            config = after
        assert k_full.dump() == k_entry.dump()
        assert full.tracker.desired == entry.tracker.desired
        assert _statuses(full) == _statuses(entry)
        assert _changes(n_full.sent[sent[0]:]) == _changes(n_entry.sent[sent[1]:])
    assert entry.entry_commits > 20
    assert refused > 0


def test_other_edits_take_the_whole_configuration() -> None:
    assert touched_entries(["/nvo3-nve:nve/local-vtep-address"]) is None
    assert touched_entries(["/nvo3-nve:nve/networks/network[vni='5']/flood-mode"]) is None
    assert touched_entries(["/nvo3-nve:nve/networks/network[vni='5']/remote-macs"]) is None
    assert touched_entries(["/nvo3-nve:nve/attachments"]) is None
    assert touched_entries(["/nvo3-nve:nve/attachments/attachment[vni='5']"]) is None
    t = touched_entries([ATT.format(5, "02:00:00:00:00:0A") + "/state",
                         RM.format(7, "02:00:00:00:00:01"), POL.format(5, "02:00:00:00:00:0a")])
    assert t is not None
    assert t.by_kind["attachment"] == {(5, "02:00:00:00:00:0a"): ATT.format(5, "02:00:00:00:00:0A")}
    assert t.by_kind["remote-mac"] == {(7, "02:00:00:00:00:01"): RM.format(7, "02:00:00:00:00:01")}
    assert t.keys() == {(5, "02:00:00:00:00:0a"), (7, "02:00:00:00:00:01")}
