"""The lab's NETCONF users and NACM rules (RFC 8341), the same on every managing daemon.

On the root vCenter, each child vCenter and the nDirector: user `operator` (group
`operators`) may do everything except read secrets (peer passwords, `nacm:default-deny-all`);
per tenant T, user `T-admin` (group `tenant-T`) reads and writes
/vcenter/tenants/tenant[name='T'] only, and the vCenter's tenant-scoped RPCs (create-vm, ...)
accept only T for it; on the nDirector T-admin reads T's virtual network and its mappings (and
gets their notifications) only, and writes nothing. The daemons' own admin user
(role-to-role traffic) is a recovery user (`nvo3.launcher`). Passwords are generated once per
lab and kept in the lab state file.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from nvo3.common import names
from nvo3.daemon import users_of
from nvo3.lab.state import LabUser
from nvo3.netconf.client.session import Client

OPERATOR = "operator"
OPERATORS = "operators"
ACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
#: roles whose daemons get the lab's users (the managing ones; NVEs and vServers keep admin)
MANAGING_ROLES = ("vcenter", "ndirector")


def tenant_user(tenant: str) -> str:
    """The user name of tenant `tenant`'s operator."""
    return f"{tenant}-admin"


def tenant_group(tenant: str) -> str:
    """The NACM group of tenant `tenant`'s operator."""
    return f"tenant-{tenant}"


def tenant_path(tenant: str | None = None) -> str:
    """The vCenter's tenant entry (or the whole list) as a NACM rule path."""
    vc = names.VCENTER
    entry = f"[{vc}:name='{tenant}']" if tenant is not None else ""
    return f"/{vc}:vcenter/{vc}:tenants/{vc}:tenant{entry}"


def lab_users(tenants: Iterable[str]) -> list[LabUser]:
    """The operator and one administrator per tenant, with fresh passwords."""
    users = [LabUser(OPERATOR, secrets.token_hex(12), [OPERATORS], None)]
    users += [LabUser(tenant_user(t), secrets.token_hex(12), [tenant_group(t)], t)
              for t in tenants]
    return users


def _rule(name: str, action: str, operations: str, path: str | None = None) -> str:
    where = f"<path>{path}</path>" if path else "<module-name>*</module-name>"
    return (f"<rule><name>{name}</name>{where}<access-operations>{operations}"
            f"</access-operations><action>{action}</action></rule>")


def _director_rules(vni: int | None) -> str:
    """A tenant's operator on the nDirector: reads its own virtual network and its mappings,
    nothing of the other tenants' networks, mappings or policies; writes nothing (the
    default)."""
    nd = names.NDIRECTOR
    top = f"/{nd}:ndirector"
    own = "" if vni is None else (
        _rule("own-network", "permit", "read", f"{top}/{nd}:networks/{nd}:network[{nd}:vni='{vni}']")
        + _rule("own-mappings", "permit", "read",
                f"{top}/{nd}:mapping-table/{nd}:network[{nd}:vni='{vni}']"))
    # the lists' entries, not their containers: a node denied read takes its whole subtree
    # with it (RFC 8341 3.4.5), the permitted entry included
    return own + "".join(_rule(name, "deny", "read", f"{top}/{what}") for name, what in (
        ("other-networks", f"{nd}:networks/{nd}:network"),
        ("other-mappings", f"{nd}:mapping-table/{nd}:network"),
        ("policies", f"{nd}:policies")))


def nacm_config(tenants: Iterable[str], role: str = "vcenter",
                vnis: Mapping[str, int] | None = None) -> str:
    """The <nacm> element the lab installs on a daemon of `role`: operators, then one rule
    list per tenant: on a vCenter its tenant entry; on the nDirector (`vnis`: each tenant's
    virtual network) read access to its own network and mappings only."""
    lists = [f"<rule-list><name>{OPERATORS}</name><group>{OPERATORS}</group>"
             + _rule("read-nacm", "permit", "read", "/ietf-netconf-acm:nacm")
             + _rule("everything-but-reading-secrets", "permit", "create update delete exec")
             + "</rule-list>"]
    for t in tenants:
        rules = (_rule("own-tenant", "permit", "*", tenant_path(t))
                 + _rule("other-tenants", "deny", "*", tenant_path())) if role == "vcenter" \
            else _director_rules((vnis or {}).get(t))
        lists.append(f"<rule-list><name>{tenant_group(t)}</name><group>{tenant_group(t)}"
                     f"</group>{rules}</rule-list>")
    prefixes = (f' xmlns:{names.VCENTER}="{names.VCENTER_NS}"' if role == "vcenter"
                else f' xmlns:{names.NDIRECTOR}="{names.NDIRECTOR_NS}"')
    return (f'<nacm xmlns="{ACM_NS}" xmlns:ietf-netconf-acm="{ACM_NS}"{prefixes}>'
            + "".join(lists) + "</nacm>")


def install(state_dir: str | Path, role: str, admin: Client, users: list[LabUser],
            tenants: list[str], vnis: Mapping[str, int] | None = None) -> None:
    """Give a managing daemon (its state directory) the lab's users (users.json) and NACM
    rules (over NETCONF, as its recovery admin `admin`)."""
    store = users_of(Path(state_dir))
    for u in users:
        store.add(u.name, password=u.password, groups=u.groups)
    admin.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                      f"{nacm_config(tenants, role, vnis)}</config>", target="running")
