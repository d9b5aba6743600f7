"""The four nvo3 roles and the YANG modules each serves.

A role whose logic is not built yet is a plain `Role`: it serves its modules (configuration is
validated and persisted, RPCs answer operation-not-supported) and does nothing else.
"""

from __future__ import annotations

from nvo3.netconf.server.role_api import Role

ROLE_MODULES = {
    "nve": ("nvo3-nve",),
    "vserver": ("nvo3-vserver",),
    "vcenter": ("nvo3-vcenter",),
    "ndirector": ("nvo3-ndirector",),
}


def make_role(name: str, **options: object) -> Role:
    """A role instance by name (nve, vserver, vcenter, ndirector).

    Options: ``netns`` (nve: the network namespace to program; vserver: the host namespace its
    VMs' ports live in; None = the root namespace); ``state_dir`` (the daemon's state
    directory, where a role keeps what it owns beside its datastore: the vServer's VM
    records, the vCenter's learned VM profiles); ``store_only`` (serve and store the role's
    configuration without acting on it: for engine benchmarks and dry runs); ``etcd``,
    ``data_center``, ``director_name`` (ndirector: the shared mapping table in etcd).
    """
    if name not in ROLE_MODULES:
        raise ValueError(f"unknown role {name!r}: choose one of {', '.join(ROLE_MODULES)}")
    if options.get("store_only"):
        return _store_only(name)
    if name == "nve":
        from nvo3.roles.nve.role import NveRole
        netns = options.get("netns")
        return NveRole(netns=str(netns) if netns else None)
    if name == "vserver":
        from pathlib import Path

        from nvo3.roles.vserver.role import VServerRole
        netns, state_dir = options.get("netns"), options.get("state_dir")
        return VServerRole(netns=str(netns) if netns else None,
                           state_dir=Path(str(state_dir)) if state_dir else None)
    if name == "ndirector":
        from nvo3.roles.ndirector.role import NDirectorRole
        if options.get("etcd") is not None:
            return NDirectorRole(etcd=options["etcd"],  # type: ignore[arg-type]
                                 data_center=str(options["data_center"]),
                                 name=str(options["director_name"]))
        return NDirectorRole()
    if name == "vcenter":
        from pathlib import Path

        from nvo3.roles.vcenter.role import VCenterRole
        state_dir = options.get("state_dir")
        return VCenterRole(state_dir=Path(str(state_dir)) if state_dir else None)
    return _store_only(name)


def _store_only(name: str) -> Role:
    role = Role()
    role.name = name
    role.modules = ROLE_MODULES[name]
    return role
