"""NACM rule matching (RFC 8341 section 3.4): paths, groups, first match wins, defaults."""

from __future__ import annotations

import pytest

from nvo3.netconf.server.nacm_rules import (
    NacmConfig,
    PathError,
    Step,
    parse_path,
    path_matches,
)

NS = {"vc": "urn:vc", "nvo3-vcenter": "urn:vc"}


def steps(*names: str, keys: dict[int, tuple[tuple[str, str], ...]] | None = None) -> tuple:
    keys = keys or {}
    return tuple(Step("urn:vc", n, keys.get(i, ())) for i, n in enumerate(names))


def test_parse_path_with_prefixes_and_predicates() -> None:
    path = parse_path("/vc:vcenter/tenants/tenant[name='alice']/vm-group[vc:name=\"g 1\"]", NS)
    assert path == (Step("urn:vc", "vcenter"), Step(None, "tenants"),
                    Step(None, "tenant", (("name", "alice"),)),
                    Step(None, "vm-group", (("name", "g 1"),)))
    assert parse_path("/", NS) == ()
    assert parse_path("/unknown:top", NS) == (Step(None, "top"),)   # any module


@pytest.mark.parametrize("bad", ["vcenter", "/vc:vcenter[name=alice]", "/a//b", "/a/b["])
def test_unreadable_paths_are_refused(bad: str) -> None:
    with pytest.raises(PathError):
        parse_path(bad, NS)


def test_a_path_matches_its_node_and_descendants_only() -> None:
    rule = parse_path("/vc:vcenter/tenants/tenant[name='alice']", NS)
    alice = steps("vcenter", "tenants", "tenant", keys={2: (("name", "alice"),)})
    bob = steps("vcenter", "tenants", "tenant", keys={2: (("name", "bob"),)})
    assert path_matches(rule, alice)
    assert path_matches(rule, (*alice, Step("urn:vc", "description")))
    assert not path_matches(rule, bob)
    assert not path_matches(rule, steps("vcenter", "tenants"))        # an ancestor
    assert not path_matches(parse_path("/other:vcenter", {"other": "urn:o"}), alice)


def config(**nacm: object) -> NacmConfig:
    return NacmConfig.parse(nacm, NS)


def rule_list(name: str, groups: list[str], *rules: dict) -> dict:
    return {"name": name, "group": groups, "rule": list(rules)}


ALICE = {"name": "alice", "module-name": "*", "access-operations": "*", "action": "permit",
         "path": "/vc:vcenter/tenants/tenant[name='alice']"}
OTHERS = {"name": "others", "path": "/vc:vcenter/tenants/tenant", "access-operations": "*",
          "action": "deny"}


def test_rfc_defaults() -> None:
    rules = config().rules_for("u", ())
    node = steps("vcenter")
    assert rules.data(node, "nvo3-vcenter", "read", None)
    assert not rules.data(node, "nvo3-vcenter", "update", None)
    assert rules.exec("nvo3-vcenter", "create-vm", deny_all=False)
    assert not rules.exec("ietf-netconf", "kill-session", deny_all=True)
    assert not rules.data(node, "nvo3-vcenter", "read", "all")         # default-deny-all
    assert rules.data(node, "nvo3-vcenter", "read", "write")           # deny-write: reads ok
    assert not rules.write_all and not rules.read_all


def test_first_match_wins_and_only_own_groups_apply() -> None:
    cfg = config(**{"rule-list": [rule_list("tenant-alice", ["tenant-alice"], ALICE, OTHERS),
                                  rule_list("everyone", ["*"], {"name": "no-create-vm",
                                            "module-name": "nvo3-vcenter",
                                            "rpc-name": "create-vm", "action": "deny",
                                            "access-operations": "exec"})]})
    alice = cfg.rules_for("alice-admin", ["tenant-alice"])
    mine = steps("vcenter", "tenants", "tenant", keys={2: (("name", "alice"),)})
    theirs = steps("vcenter", "tenants", "tenant", keys={2: (("name", "bob"),)})
    assert alice.data(mine, "nvo3-vcenter", "update", None)
    assert alice.data(mine, "nvo3-vcenter", "read", "all")      # a matching rule wins
    assert not alice.data(theirs, "nvo3-vcenter", "read", None)
    assert not alice.exec("nvo3-vcenter", "create-vm", False)    # the "*" group's rule
    outsider = cfg.rules_for("carol", [])
    assert outsider.data(theirs, "nvo3-vcenter", "read", None)    # read-default permit
    assert not outsider.data(theirs, "nvo3-vcenter", "update", None)
    assert not outsider.exec("nvo3-vcenter", "create-vm", False)


def test_groups_configured_and_external() -> None:
    cfg = config(groups={"group": [{"name": "ops", "user-name": ["dan"]}]},
                 **{"rule-list": [rule_list("ops", ["ops"], {"name": "all", "action": "permit",
                                                             "access-operations": "*"})]})
    assert cfg.rules_for("dan", []).write_all
    assert cfg.rules_for("eve", ["ops"]).write_all
    off = config(**{"enable-external-groups": False, "rule-list": cfg_lists(cfg)})
    assert not off.rules_for("eve", ["ops"]).write_all


def cfg_lists(cfg: NacmConfig) -> list[dict]:
    return [rule_list("ops", ["ops"], {"name": "all", "action": "permit",
                                       "access-operations": "*"})]


def test_write_all_needs_a_catch_all_permit_before_any_deny() -> None:
    deny_first = config(**{"rule-list": [rule_list("l", ["*"], OTHERS, {
        "name": "all", "action": "permit", "access-operations": "*"})]})
    assert not deny_first.rules_for("x", []).write_all
    read_only = config(**{"rule-list": [rule_list("l", ["*"], {
        "name": "all", "action": "permit", "access-operations": "read"})]})
    rules = read_only.rules_for("x", [])
    assert rules.read_all and not rules.write_all


def test_notification_rules() -> None:
    cfg = config(**{"rule-list": [rule_list("l", ["*"], {
        "name": "n", "module-name": "nvo3-vcenter", "notification-name": "vm-alert",
        "access-operations": "read", "action": "deny"})]})
    rules = cfg.rules_for("x", [])
    assert not rules.notification("nvo3-vcenter", "vm-alert", False)
    assert rules.notification("nvo3-vcenter", "vm-report", False)
    assert not rules.notification("m", "secret-event", True)


def test_access_operations_parsed_as_bits() -> None:
    cfg = config(**{"rule-list": [rule_list("l", ["*"], {
        "name": "w", "access-operations": "create update", "action": "permit"})]})
    rules = cfg.rules_for("x", [])
    node = steps("vcenter")
    assert rules.data(node, "m", "create", None) and rules.data(node, "m", "update", None)
    assert not rules.data(node, "m", "delete", None)
