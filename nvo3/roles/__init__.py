"""The four nvo3 roles and the YANG modules each serves.

A role whose logic is not built yet is a plain `Role`: it serves its modules (configuration is
validated and persisted, RPCs answer operation-not-supported) and does nothing else.
"""

from __future__ import annotations

from ..netconf.role import Role

ROLE_MODULES = {
    "nve": ("nvo3-nve",),
    "vserver": ("nvo3-vserver",),
    "vcenter": ("nvo3-vcenter",),
    "ndirector": ("nvo3-ndirector",),
}


def make_role(name: str, **options: object) -> Role:
    """A role instance by name (nve, vserver, vcenter, ndirector)."""
    if name not in ROLE_MODULES:
        raise ValueError(f"unknown role {name!r}: choose one of {', '.join(ROLE_MODULES)}")
    role = Role()
    role.name = name
    role.modules = ROLE_MODULES[name]
    return role
