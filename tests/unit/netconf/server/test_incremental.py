"""Differential test of the incremental validator against full libyang validation.

Random sequences of plain-merge edits (hypothesis) on the nvo3-nve, nvo3-ndirector and
nvo3-vcenter modules, from small pools of names and values so that collisions happen: new list
entries, changed leaves, bad leafrefs, duplicate unique values, missing mandatory leaves, must
violations (remote-vtep = local-vtep-address, a port range without tcp/udp, ...). Every edit is
decided twice:

- the reference, what the engine does today (`merge.merged`): duplicate the tree, merge the edit,
  `lyd_validate_all`;
- the incremental path: `plan_merge`, merge into the live tree, `Checker.check`; on FULL the
  edit is taken back out (`undo`, which must restore the tree exactly) and the reference
  decides.

Edits with operations (deletions of list entries, leaves and containers, replaced entries;
`split_edit`) are mixed into the sequences in `test_deletions_are_decided_as_full_validation`:
the reference applies the split edit to a duplicate and validates it whole; the incremental
path applies it in the live tree and checks it (on FULL, `undo` puts the deleted subtrees
back). Their accept/refuse and error answers against the Editor are compared at the engine
level (`test_engine_in_place.py`).

A VALID verdict must only be given where the reference accepts, and the resulting trees must
print identically with every default (report-all) and carry the same libyang flags. Error tags
and error paths need no comparison: the incremental path never refuses by itself, on FULL the
engine reports the full validation's error, so those are equal by construction. The fast path
must really be taken: at least half of the accepted edits of each module are decided VALID.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import libyang
import pytest
from _libyang import ffi, lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.proto.xml import BASE_NS
from nvo3.netconf.server.constraints import ConstraintIndex
from nvo3.netconf.server.incremental import Checker, plan_merge, release, undo
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.split_edit import NotInPlace, apply, split
from nvo3.netconf.server.xpath_reach import ROOT, Unbounded, reaches

EXAMPLES = 1500         # sequences per module
MAX_EDITS = 10          # edits per sequence
FLAG_MASK = 0x07        # LYD_DEFAULT | LYD_WHEN_TRUE | LYD_NEW

# -- pools ------------------------------------------------------------------------------------
VNIS = st.sampled_from(["1", "2", "3"])
MACS = st.sampled_from([f"02:00:00:00:00:0{i}" for i in range(1, 6)])
IPS = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
PORTS = st.sampled_from(["p1", "p2", "p3"])
NAMES = st.sampled_from(["a", "b", "c"])
VLANS = st.sampled_from(["10", "20"])
BOOLS = st.sampled_from(["true", "false"])


def opt(strategy: st.SearchStrategy[str], tag: str) -> st.SearchStrategy[str]:
    """`<tag>value</tag>` or nothing."""
    return st.one_of(st.just(""), strategy.map(lambda v: f"<{tag}>{v}</{tag}>"))


def often(strategy: st.SearchStrategy[str], tag: str) -> st.SearchStrategy[str]:
    """`<tag>value</tag>` most of the time."""
    present = strategy.map(lambda v: f"<{tag}>{v}</{tag}>")
    return st.one_of(st.just(""), present, present, present)


def rarely(strategy: st.SearchStrategy[str], tag: str) -> st.SearchStrategy[str]:
    """`<tag>value</tag>` now and then."""
    empty = st.just("")
    return st.one_of(empty, empty, empty, strategy.map(lambda v: f"<{tag}>{v}</{tag}>"))


def elem(tag: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`<tag>` around the concatenation of parts."""
    return st.tuples(*parts).map(lambda ps: f"<{tag}>{''.join(ps)}</{tag}>")


def leaf(tag: str, strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A leaf that is always present (list keys)."""
    return strategy.map(lambda v: f"<{tag}>{v}</{tag}>")


def port_range(tag: str) -> st.SearchStrategy[str]:
    nums = st.sampled_from(["80", "443", "1000"])
    return st.one_of(st.just(""), elem(tag, opt(nums, "lower-port"), opt(nums, "upper-port")))


ACL = elem("acl", opt(st.sampled_from(["permit", "deny"]), "default-action"),
           elem("rule", leaf("sequence-id", st.sampled_from(["1", "2", "3"])),
                opt(NAMES, "name"), opt(st.sampled_from(["permit", "deny"]), "action"),
                opt(st.sampled_from(["any", "tcp", "udp", "icmp"]), "protocol"),
                port_range("source-port"), port_range("destination-port")))
POLICY_BODY = st.tuples(opt(VLANS, "vlan"), st.one_of(st.just(""), ACL),
                        st.one_of(st.just(""), elem("rate-limit",
                                                    opt(st.sampled_from(["100", "200"]), "rate"),
                                                    opt(st.sampled_from(["10"]), "burst")))
                        ).map("".join)

# -- nvo3-nve ---------------------------------------------------------------------------------
NVE_NS = "urn:nvo3:yang:nvo3-nve"
NVE_SEED = (f'<nve xmlns="{NVE_NS}"><local-vtep-address>10.0.0.1</local-vtep-address>'
            "<networks><network><vni>1</vni></network></networks></nve>")
REMOTE_MAC = elem("remote-mac", leaf("mac", MACS), often(IPS, "remote-vtep"),
                  opt(st.sampled_from(["1", "2"]), "sequence-number"), opt(BOOLS, "sticky"),
                  opt(st.sampled_from(["192.0.2.1", "192.0.2.2"]), "ip-address"),
                  opt(NAMES, "remote-nve"))
NETWORK = elem("network", leaf("vni", VNIS), opt(NAMES, "name"),
               opt(st.sampled_from(["none", "head-end-replication"]), "flood-mode"),
               opt(BOOLS, "arp-nd-suppression"),
               st.one_of(st.just(""), elem("remote-macs", REMOTE_MAC)),
               st.one_of(st.just(""), elem("flood-list", elem("vtep", leaf("address", IPS)))))
ATTACHMENT = elem("attachment", leaf("vni", VNIS), leaf("mac", MACS), often(PORTS, "port"),
                  rarely(VLANS, "vlan"), opt(st.sampled_from(["associated", "activated"]), "state"),
                  opt(NAMES, "vm-id"))
POLICY = elem("policy", leaf("vni", VNIS), leaf("mac", MACS), POLICY_BODY)
NVE_PART = st.one_of(
    opt(IPS, "local-vtep-address"), opt(st.sampled_from(["4789", "4790"]), "udp-port"),
    opt(NAMES, "nve-id"),
    elem("networks", NETWORK), elem("networks", NETWORK),
    elem("attachments", ATTACHMENT), elem("attachments", ATTACHMENT),
    elem("policies", POLICY))
NVE_EDIT = st.lists(NVE_PART, min_size=1, max_size=3).map(
    lambda parts: f'<nve xmlns="{NVE_NS}">{"".join(parts)}</nve>')

# -- nvo3-ndirector ---------------------------------------------------------------------------
ND_NS = "urn:nvo3:yang:nvo3-ndirector"
ND_SEED = (f'<ndirector xmlns="{ND_NS}"><data-center>dc1</data-center><nves><nve><name>a</name>'
           "<address>192.0.2.10</address><vtep-address>10.0.0.1</vtep-address></nve></nves>"
           "</ndirector>")
ND_NVE = elem("nve", leaf("name", NAMES), often(st.sampled_from(["192.0.2.10", "h1"]), "address"),
              often(IPS, "vtep-address"), opt(st.sampled_from(["830", "831"]), "port"),
              opt(BOOLS, "enabled"))
ND_NETWORK = elem("network", leaf("vni", VNIS), opt(NAMES, "tenant"), opt(NAMES, "name"),
                  opt(NAMES, "member-nve"))
GROUP_POLICY = elem("group-policy", leaf("tenant", NAMES), leaf("group", NAMES), POLICY_BODY)
VM_POLICY = elem("vm-policy", leaf("vni", VNIS), leaf("mac", MACS), opt(NAMES, "tenant"),
                 opt(NAMES, "group"), POLICY_BODY)
ND_PART = st.one_of(
    opt(NAMES, "data-center"), elem("nves", ND_NVE), elem("nves", ND_NVE),
    elem("networks", ND_NETWORK), elem("policies", GROUP_POLICY), elem("policies", VM_POLICY),
    elem("duplicate-mac-detection", opt(BOOLS, "enabled"), opt(BOOLS, "freeze"),
         opt(st.sampled_from(["3", "5"]), "max-moves"),
         opt(st.sampled_from(["60", "120"]), "recovery-seconds")),
    elem("peers", elem("peer", leaf("name", NAMES), opt(NAMES, "data-center"),
                       opt(st.sampled_from(["192.0.2.20"]), "address"))))
ND_EDIT = st.lists(ND_PART, min_size=1, max_size=3).map(
    lambda parts: f'<ndirector xmlns="{ND_NS}">{"".join(parts)}</ndirector>')

# -- nvo3-vcenter -----------------------------------------------------------------------------
VC_NS = "urn:nvo3:yang:nvo3-vcenter"
VC_SEED = (f'<vcenter xmlns="{VC_NS}"><name>vc1</name><tenants><tenant><name>a</name>'
           "<vnid>1</vnid></tenant></tenants></vcenter>")
VM = elem("vm", leaf("name", NAMES), opt(VNIS, "vnid"), rarely(NAMES, "vm-group"),
          often(MACS, "mac-address"), opt(PORTS, "port"), opt(VLANS, "vlan"),
          opt(st.sampled_from(["192.0.2.1", "192.0.2.2"]), "ip-address"))
VM_GROUP = elem("vm-group", leaf("name", NAMES),
                st.one_of(st.just(""), elem("profile", POLICY_BODY)))
TENANT = elem("tenant", leaf("name", NAMES), opt(VNIS, "vnid"),
              st.one_of(st.just(""), VM_GROUP), st.lists(VM, max_size=2).map("".join))
VC_PART = st.one_of(
    opt(NAMES, "name"), elem("placement", opt(st.sampled_from(["round-robin", "first-fit"]),
                                              "policy")),
    elem("reporting", opt(st.sampled_from(["10", "30"]), "interval")),
    elem("tenants", TENANT), elem("tenants", TENANT), elem("tenants", TENANT),
    elem("vservers", elem("vserver", leaf("name", NAMES),
                          opt(st.sampled_from(["192.0.2.30"]), "address"), opt(NAMES, "nve"))),
    elem("child-vcenters", elem("child-vcenter", leaf("name", NAMES),
                                opt(st.sampled_from(["192.0.2.40"]), "address"),
                                opt(NAMES, "data-center"))))
VC_EDIT = st.lists(VC_PART, min_size=1, max_size=3).map(
    lambda parts: f'<vcenter xmlns="{VC_NS}">{"".join(parts)}</vcenter>')


# -- edits with operations (deletions, replaced entries) ---------------------------------------
OPS = "OPS:"            # marks an edit with operations in a sequence
DELETE = st.sampled_from(["remove", "delete"])


def op(operation: st.SearchStrategy[str], template: str,
       *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`template` with the operation attribute as {0} and the parts as {1}, {2}, ..."""
    return st.tuples(operation, *parts).map(
        lambda vs: template.format(f' nc:operation="{vs[0]}"', *vs[1:]))


def replaced(entry: st.SearchStrategy[str], tag: str) -> st.SearchStrategy[str]:
    """A list entry (from a merge strategy) replaced."""
    return entry.map(lambda e: e.replace(f"<{tag}>", f'<{tag} nc:operation="replace">', 1))


def ops_edit(ns: str, top: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(*parts), min_size=1, max_size=3).map(
        lambda ps: f'{OPS}<{top} xmlns="{ns}" xmlns:nc="{BASE_NS}">{"".join(ps)}</{top}>')


NVE_OPS = ops_edit(
    NVE_NS, "nve",
    op(DELETE, "<networks><network{0}><vni>{1}</vni></network></networks>", VNIS),
    op(DELETE, "<networks><network><vni>{1}</vni><remote-macs><remote-mac{0}><mac>{2}</mac>"
               "</remote-mac></remote-macs></network></networks>", VNIS, MACS),
    op(DELETE, "<networks><network><vni>{1}</vni><remote-macs{0}/></network></networks>", VNIS),
    op(DELETE, "<networks><network><vni>{1}</vni><flood-list><vtep{0}><address>{2}</address>"
               "</vtep></flood-list></network></networks>", VNIS, IPS),
    op(DELETE, "<networks><network><vni>{1}</vni><name{0}/></network></networks>", VNIS),
    op(DELETE, "<attachments><attachment{0}><vni>{1}</vni><mac>{2}</mac></attachment>"
               "</attachments>", VNIS, MACS),
    op(DELETE, "<attachments><attachment><vni>{1}</vni><mac>{2}</mac><vm-id{0}/></attachment>"
               "</attachments>", VNIS, MACS),
    op(DELETE, "<attachments><attachment><vni>{1}</vni><mac>{2}</mac><port{0}/></attachment>"
               "</attachments>", VNIS, MACS),
    op(DELETE, "<policies><policy{0}><vni>{1}</vni><mac>{2}</mac></policy></policies>",
       VNIS, MACS),
    op(DELETE, "<local-vtep-address{0}/>"),
    st.tuples(VNIS, replaced(REMOTE_MAC, "remote-mac")).map(
        lambda p: f"<networks><network><vni>{p[0]}</vni><remote-macs>{p[1]}</remote-macs>"
                  "</network></networks>"),
    replaced(ATTACHMENT, "attachment").map(lambda a: f"<attachments>{a}</attachments>"),
    replaced(POLICY, "policy").map(lambda a: f"<policies>{a}</policies>"),
    NVE_PART)
ND_OPS = ops_edit(
    ND_NS, "ndirector",
    op(DELETE, "<nves><nve{0}><name>{1}</name></nve></nves>", NAMES),
    op(DELETE, "<networks><network{0}><vni>{1}</vni></network></networks>", VNIS),
    op(DELETE, "<networks><network><vni>{1}</vni><member-nve{0}>{2}</member-nve></network>"
               "</networks>", VNIS, NAMES),
    op(DELETE, "<policies><group-policy{0}><tenant>{1}</tenant><group>{2}</group>"
               "</group-policy></policies>", NAMES, NAMES),
    op(DELETE, "<policies><vm-policy{0}><vni>{1}</vni><mac>{2}</mac></vm-policy></policies>",
       VNIS, MACS),
    op(DELETE, "<peers><peer{0}><name>{1}</name></peer></peers>", NAMES),
    op(DELETE, "<data-center{0}/>"),
    replaced(ND_NVE, "nve").map(lambda e: f"<nves>{e}</nves>"),
    ND_PART)
VC_OPS = ops_edit(
    VC_NS, "vcenter",
    op(DELETE, "<tenants><tenant{0}><name>{1}</name></tenant></tenants>", NAMES),
    op(DELETE, "<tenants><tenant><name>{1}</name><vm{0}><name>{2}</name></vm></tenant>"
               "</tenants>", NAMES, NAMES),
    op(DELETE, "<tenants><tenant><name>{1}</name><vm-group{0}><name>{2}</name></vm-group>"
               "</tenant></tenants>", NAMES, NAMES),
    op(DELETE, "<vservers><vserver{0}><name>{1}</name></vserver></vservers>", NAMES),
    op(DELETE, "<child-vcenters{0}/>"),
    replaced(TENANT, "tenant").map(lambda t: f"<tenants>{t}</tenants>"),
    VC_PART)


# -- the replay -------------------------------------------------------------------------------
@dataclass
class Stats:
    """Decisions over every edit of a test."""

    edits: int = 0
    accepted: int = 0
    accepted_valid: int = 0
    refused: int = 0
    ops_accepted: int = 0           # edits with operations
    ops_valid: int = 0

    def __str__(self) -> str:
        return (f"{self.edits} edits: {self.accepted} accepted ({self.accepted_valid} VALID), "
                f"{self.refused} refused; with operations {self.ops_accepted} accepted "
                f"({self.ops_valid} VALID)")


def printed(tree: libyang.DNode) -> tuple[str, str]:
    """The tree printed with every default (report-all) and with explicit nodes only."""
    first = tree.first_sibling()
    return (first.print_mem("xml", with_siblings=True, include_implicit_defaults=True) or "",
            first.print_mem("xml", with_siblings=True) or "")


def flags(tree: libyang.DNode) -> list[tuple[str, int]]:
    """(schema name, libyang flags) of every node, in document order.

    The default flag of containers is left out: libyang's merge turns a default leaf explicit
    without clearing the default flag of its non-presence container ancestors (a duplicate of
    the tree clears it, so today's engine has it stale until the next edit); the incremental
    path clears it at once. Printing does not depend on it (both prints are compared).
    """
    out: list[tuple[str, int]] = []

    def walk(node: Any) -> None:
        while node != ffi.NULL:
            mask = FLAG_MASK
            if int(node.schema.nodetype) & (int(lib.LYS_CONTAINER) | int(lib.LYS_LIST)):
                mask &= ~0x01
            out.append((ffi.string(node.schema.name).decode(), int(node.flags) & mask))
            if int(node.schema.nodetype) & (int(lib.LYS_CONTAINER) | int(lib.LYS_LIST)):
                walk(lib.lyd_child(node))
            node = node.next

    walk(tree.first_sibling().cdata)
    return out


class Replay:
    """One module's schema, constraint index and seed tree."""

    def __init__(self, module: str, seed: str, limit: int = 64):
        self.schema = Schema([YANG_DIR], [module])
        self.index = ConstraintIndex(self.schema.context)
        self.seed = seed
        self.limit = limit

    def parse(self, xml: str) -> libyang.DNode:
        edit = self.schema.context.parse_data_mem(xml, "xml", strict=True, no_state=True,
                                                  parse_only=True)
        assert edit is not None
        return edit

    def run(self, edits: list[str], stats: Stats) -> None:
        checker = Checker(self.index, limit=self.limit)
        live = self.schema.context.parse_data_mem(self.seed, "xml", strict=True, no_state=True)
        assert live is not None
        try:
            for xml in edits:
                live = self.step(live, xml, checker, stats)
        finally:
            live.first_sibling().free()

    def step(self, live: libyang.DNode, xml: str, checker: Checker,
             stats: Stats) -> libyang.DNode:
        stats.edits += 1
        if xml.startswith(OPS):
            return self.ops_step(live, xml[len(OPS):], checker, stats)
        before, before_flags = printed(live), flags(live)
        reference: libyang.DNode | None = live.duplicate(with_siblings=True, recursive=True)
        assert reference is not None
        reference.merge(self.parse(xml), with_siblings=True, destruct=True)
        try:
            reference.first_sibling().validate_all(no_state=True)
        except libyang.LibyangError:
            reference.first_sibling().free()
            reference = None

        edit = self.parse(xml)
        changes = plan_merge(live, edit)
        for created in changes.created:
            assert live.find_path(created.path) is None, f"{created.path} exists: {xml}"
        for changed in changes.changed:
            assert live.find_path(changed.path) is not None, f"{changed.path} is new: {xml}"
        if changes.unsupported:             # not merged in place: the full path decides
            edit.free()
            return self.decided_by_reference(live, reference, checker, stats)
        live.merge(edit, with_siblings=True, destruct=True)
        live = live.first_sibling()
        verdict = checker.check(live, changes)
        if verdict.valid:
            assert reference is not None, f"VALID but full validation refuses: {xml}"
            assert printed(live) == printed(reference), xml
            assert flags(live) == flags(reference), xml
            reference.first_sibling().free()
            stats.accepted += 1
            stats.accepted_valid += 1
            return live
        undo(live, changes)
        live = live.first_sibling()
        assert printed(live) == before, f"undo did not restore the tree: {xml}"
        assert flags(live) == before_flags, f"undo did not restore the flags: {xml}"
        return self.decided_by_reference(live, reference, checker, stats)

    def ops_step(self, live: libyang.DNode, xml: str, checker: Checker,
                 stats: Stats) -> libyang.DNode:
        """An edit with operations: split, applied to a copy and validated whole (the
        reference), and applied in place and checked incrementally."""
        config = etree.fromstring(f'<config xmlns="{BASE_NS}">{xml}</config>')
        edit = split(self.schema, config, "merge")
        if edit is None:
            return live                     # the Editor's: not this test's
        before, before_flags = printed(live), flags(live)
        reference: libyang.DNode | None = live.duplicate(with_siblings=True, recursive=True)
        assert reference is not None
        try:
            applied = apply(self.schema, reference, edit)
        except NotInPlace:                  # the Editor's (data-missing, ...)
            reference.first_sibling().free()
            try:
                apply(self.schema, live, edit)
            except NotInPlace:
                assert printed(live) == before and flags(live) == before_flags, xml
                return live
            raise AssertionError(f"applies in place, not in a copy: {xml}") from None
        release(applied.changes)
        reference = applied.first
        assert reference is not None
        try:
            reference.first_sibling().validate_all(no_state=True)
        except libyang.LibyangError:
            reference.first_sibling().free()
            reference = None
        changes = apply(self.schema, live, edit).changes
        live = live.first_sibling()
        verdict = checker.check(live, changes)
        if verdict.valid:
            assert reference is not None, f"VALID but full validation refuses: {xml}"
            assert printed(live) == printed(reference), xml
            assert flags(live) == flags(reference), xml
            release(changes)
            reference.first_sibling().free()
            stats.accepted += 1
            stats.ops_accepted += 1
            stats.ops_valid += 1
            return live
        undo(live, changes)
        live = live.first_sibling()
        assert printed(live) == before, f"undo did not restore the tree: {xml}"
        assert flags(live) == before_flags, f"undo did not restore the flags: {xml}"
        stats.ops_accepted += reference is not None
        return self.decided_by_reference(live, reference, checker, stats)

    @staticmethod
    def decided_by_reference(live: libyang.DNode, reference: libyang.DNode | None,
                             checker: Checker, stats: Stats) -> libyang.DNode:
        checker.forget()
        if reference is None:
            stats.refused += 1
            return live
        stats.accepted += 1
        live.first_sibling().free()
        return reference.first_sibling()


def differential(module: str, seed: str, edit: st.SearchStrategy[str], limit: int = 64,
                 examples: int = EXAMPLES) -> Stats:
    replay = Replay(module, seed, limit)
    stats = Stats()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(edit, min_size=1, max_size=MAX_EDITS))
    def sequences(edits: list[str]) -> None:
        replay.run(edits, stats)

    sequences()
    print(module, stats)
    return stats


@pytest.mark.parametrize("module,seed,edit", [
    ("nvo3-nve", NVE_SEED, NVE_EDIT),
    ("nvo3-ndirector", ND_SEED, ND_EDIT),
    ("nvo3-vcenter", VC_SEED, VC_EDIT),
])
def test_incremental_decides_as_full_validation(module: str, seed: str,
                                                edit: st.SearchStrategy[str]) -> None:
    stats = differential(module, seed, edit)
    assert stats.refused >= stats.edits // 20, f"too few invalid edits to prove anything: {stats}"
    assert stats.accepted_valid * 2 >= stats.accepted, f"the fast path is rarely taken: {stats}"


@pytest.mark.parametrize("module,seed,edit,ops", [
    ("nvo3-nve", NVE_SEED, NVE_EDIT, NVE_OPS),
    ("nvo3-ndirector", ND_SEED, ND_EDIT, ND_OPS),
    ("nvo3-vcenter", VC_SEED, VC_EDIT, VC_OPS),
])
def test_deletions_are_decided_as_full_validation(module: str, seed: str,
                                                  edit: st.SearchStrategy[str],
                                                  ops: st.SearchStrategy[str]) -> None:
    """Sequences mixing plain merges and edits with operations (deletions of list entries,
    leaves and containers, replaced entries): VALID only where a full validation of the same
    result accepts, the same tree; FULL undone exactly."""
    stats = differential(module, seed, st.one_of(edit, ops, ops), examples=EXAMPLES // 2)
    assert stats.ops_valid * 3 >= stats.ops_accepted, f"deletions rarely in place: {stats}"
    assert stats.ops_accepted >= stats.edits // 10, f"too few accepted deletions: {stats}"


def test_instance_limit_falls_back_to_full_validation() -> None:
    """With room for one instance per constraint, edits reaching several go FULL, soundly."""
    stats = differential("nvo3-nve", NVE_SEED, NVE_EDIT, limit=1, examples=EXAMPLES // 5)
    assert stats.accepted_valid < stats.accepted


# -- the index and the reach analysis ---------------------------------------------------------
@pytest.fixture(scope="module")
def nve_index() -> ConstraintIndex:
    return ConstraintIndex(Schema([YANG_DIR], ["nvo3-nve"]).context)


def _named(index: ConstraintIndex, kind: str, carrier: str) -> Iterator[Any]:
    for c in index.constraints:
        if c.kind == kind and index.nodes[c.carrier].name == carrier:
            yield c


def test_index_finds_the_nve_constraints(nve_index: ConstraintIndex) -> None:
    def name(n: int) -> str:
        return "/" if n == ROOT else nve_index.nodes[n].name

    (remote_vtep,) = _named(nve_index, "must", "remote-vtep")
    assert {(name(n), name(a)) for n, a in remote_vtep.reaches} == {
        ("remote-vtep", "remote-vtep"), ("nve", "/"), ("local-vtep-address", "/"), ("/", "/")}
    (vni,) = _named(nve_index, "leafref", "vni")
    assert ("vni", "/") in {(name(n), name(a)) for n, a in vni.reaches}
    (unique,) = _named(nve_index, "unique", "attachment")
    assert unique.expression == "port"
    assert list(_named(nve_index, "mandatory", "remote-vtep"))
    assert not nve_index.everywhere
    assert all(c.unbounded is None for c in nve_index.constraints)


@pytest.mark.parametrize("expression", [
    "//nvo3-nve:vni", "../*", "deref(.)", "$x", "ancestor::nvo3-nve:nve", "@foo", "../node()",
    "unknown:nve",
])
def test_unbounded_expressions(nve_index: ConstraintIndex, expression: str) -> None:
    (remote_vtep,) = _named(nve_index, "must", "remote-vtep")
    with pytest.raises(Unbounded):
        reaches(expression, nve_index.view, {"nvo3-nve": "nvo3-nve"}, "nvo3-nve",
                remote_vtep.carrier)


def test_value_use_reaches_descendants(nve_index: ConstraintIndex) -> None:
    (network,) = _named(nve_index, "must", "network")
    found = reaches("string(remote-macs) = 'x' and count(flood-list) > 0", nve_index.view, {},
                    "nvo3-nve", network.carrier)
    names = {nve_index.nodes[n].name for n, _ in found if n != ROOT}
    assert {"remote-macs", "remote-mac", "mac", "remote-vtep", "flood-list"} <= names
    assert "address" not in names               # count() needs existence only


@pytest.mark.parametrize("current", ["<value>v1</value>", ""])
def test_a_unique_leaf_set_or_created_in_an_existing_entry_is_checked(current: str) -> None:
    """Regression (found by the engine-level differential test): creating a unique leaf under
    an existing list entry must check the entry against the others, as changing it does."""
    from engine_harness import TEST_YANG

    ctx = Schema([TEST_YANG, YANG_DIR], ["engine-test"]).context
    ns = "urn:nvo3:test:engine"
    live = ctx.parse_data_mem(f'<top xmlns="{ns}"><item><id>5</id>{current}</item><item><id>1</id>'
                              "<value>v3</value></item></top>", "xml", no_state=True, strict=True,
                              validate_present=True)
    edit = ctx.parse_data_mem(f'<top xmlns="{ns}"><item><id>5</id><value>v3</value></item></top>',
                              "xml", no_state=True, strict=True, parse_only=True)
    changes = plan_merge(live, edit)
    live.first_sibling().merge(edit, with_siblings=True, destruct=True)
    verdict = Checker(ConstraintIndex(ctx)).check(live, changes)
    assert not verdict.valid and "unique" in verdict.reason
