"""A root vCenter's VM groups, carried to the child vCenter that is to use one.

A group made at the root (`nvo3 group create`, an Ansible play on the root) is usable in every
data center below it: before a root forwards a create-vm naming a group to a child, it merges
that group (its profile as the root has it) into the child's running configuration. A plain
merge, so a group the child already has is updated to the root's, never duplicated.
"""

from __future__ import annotations

from nvo3.common.tree import Tree
from nvo3.roles.peers import codec as peer
from nvo3.roles.vcenter.context import MODULE, VCenterContext
from nvo3.roles.vcenter.profiles import Group


def group_config(tenant: str, group: Group) -> Tree:
    """The /vcenter tree holding `group` of `tenant` (what a child's configuration gets)."""
    profile: Tree = {}
    if group.vlan is not None:
        profile["vlan"] = group.vlan
    if group.acl:
        profile["acl"] = group.acl
    if group.rate_limit:
        profile["rate-limit"] = group.rate_limit
    if group.resources:
        profile["resources"] = dict(group.resources)
    entry: Tree = {"name": group.name, **({"profile": profile} if profile else {})}
    return {"vcenter": {"tenants": {"tenant": [{"name": tenant, "vm-group": [entry]}]}}}


def carry_group(ctx: VCenterContext, child: str, tenant: str, group_name: str | None) -> None:
    """Merge the root's group `group_name` of `tenant` into `child` (nothing without one);
    PeerError when the child refuses it."""
    if not group_name:
        return
    with ctx.lock:
        config = ctx.store.tenants.get(tenant)
        group = config.groups.get(group_name) if config else None
        tree = group_config(tenant, group) if group else None
    if tree is None:
        return                      # the store refused the unknown group already
    ctx.child_links.run(child, lambda c: peer.merge_config(c, MODULE, tree))
