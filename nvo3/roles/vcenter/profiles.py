"""The vCenter's VM profiles per tenant: a pure store, no NETCONF and no I/O.

A profile is the draft's "VM information" (vCenter, vServer, VNID, VLAN tag, VM group, VM
MAC/IP, plus port and resources) and where the VM runs now (location, state, monitoring).

Two kinds of profile live side by side:

* *configured*: a `tenants/tenant/vm` entry of the running configuration. Its items come
  from the configuration; registration, reports and the vCenter's own operations only
  change its location, state and monitoring.
* *learned*: created by a registration (or by create-vm / replicate-vm for a VM without a
  configured profile). The role persists these itself (:meth:`ProfileStore.dump` /
  :meth:`ProfileStore.load`), since a role cannot edit its own datastore.

Rules (draft section "vServer to vCenter interface"):

* registration creates or updates; unregistration removes a learned profile (a configured
  one only loses its location); an unregistration of an unknown VM is answered
  ``unknown-vm`` and the caller raises the ``unknown-vm-unregistration`` alert;
* an unregistration by a vServer that no longer hosts the VM (the source of a finished
  relocation) changes nothing;
* a MAC address is unique within a VNI (key (vnid, mac)): the mapping table forwards by it;
* every VM needs a VNID: its own or its tenant's.

Indexes by (vnid, MAC) and by IP address make lookups and bulk registration O(1) per VM.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nvo3.common.mac import derived_mac, norm_mac
from nvo3.common.tree import Tree

Key = tuple[str, str]            # (tenant, vm name)

DEFAULT_RESOURCES = {"vcpus": 1, "memory": 512, "disk": 10}
RUNNING_STATES = ("created", "powered-on", "powered-off", "migrating")
MONITORING = ("cpu-utilization", "memory-utilization", "disk-utilization",
              "network-utilization", "network-storage-utilization", "availability", "uptime")


class ProfileError(Exception):
    """A request the store refuses; nothing changed.

    `result` is the per-VM operation-result of the bulk operations, `app_tag` a stable
    machine-readable reason, `alert` the vm-alert kind the caller should raise (or None).
    """

    def __init__(self, message: str, app_tag: str, result: str = "rejected",
                 tag: str = "invalid-value", alert: str | None = None):
        super().__init__(message)
        self.app_tag, self.result, self.tag, self.alert = app_tag, result, tag, alert


def canonical_mac(mac: str) -> str:
    """`mac` in canonical form (:func:`nvo3.common.mac.norm_mac`); a malformed address is
    refused with ProfileError ``bad-mac-address`` (invalid-value)."""
    try:
        return norm_mac(mac)
    except ValueError as exc:
        raise ProfileError(str(exc), "bad-mac-address") from None


def _mac_or_text(mac: str) -> str:
    """`mac` in canonical form, or as given when it is not a MAC address (it then matches no
    profile)."""
    try:
        return norm_mac(mac)
    except ValueError:
        return mac


@dataclass
class Group:
    """A VM group and its group profile (network policy and resource template)."""

    name: str
    vlan: int | None = None
    acl: Tree | None = None
    rate_limit: Tree | None = None
    resources: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, tree: Tree) -> Group:
        prof = tree.get("profile") or {}
        return cls(tree["name"], _int(prof.get("vlan")), prof.get("acl") or None,
                   prof.get("rate-limit") or None, _resources(prof.get("resources")))

    def policy(self) -> Tree:
        """The group's network policy in the vServer's `policy` shape."""
        out: Tree = {}
        if self.acl:
            out["acl"] = copy.deepcopy(self.acl)
        if self.rate_limit:
            out["rate-limit"] = copy.deepcopy(self.rate_limit)
        return out


@dataclass
class TenantConfig:
    """A tenant as configured: its VNID (the default of its VMs) and its VM groups."""

    name: str
    vnid: int | None = None
    groups: dict[str, Group] = field(default_factory=dict)


@dataclass
class Location:
    """Where a VM runs now: vServer, its NVE, the (child) vCenter, data center, VTEP."""

    vserver: str | None = None
    nve: str | None = None
    vcenter: str | None = None
    data_center: str | None = None
    vtep_address: str | None = None


@dataclass
class Profile:
    """One VM profile. Items left None fall back to the group / tenant (see the store)."""

    tenant: str
    name: str
    mac: str
    vnid: int | None = None
    vlan: int | None = None
    vm_group: str | None = None
    ips: list[str] = field(default_factory=list)
    port: str | None = None
    resources: dict[str, int] = field(default_factory=dict)
    vserver: str | None = None            # the profile item (configured pin, or where it ran)
    vcenter: str | None = None
    description: str | None = None
    configured: bool = False
    # dynamic
    location: Location = field(default_factory=Location)
    state: str | None = None
    registered: bool = False
    last_change: float | None = None
    monitoring: Tree = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.tenant, self.name)

    @classmethod
    def from_config(cls, tenant: str, vm: Tree) -> Profile:
        return cls(tenant, vm["name"], canonical_mac(vm["mac-address"]), _int(vm.get("vnid")),
                   _int(vm.get("vlan")), vm.get("vm-group"), list(vm.get("ip-address") or []),
                   vm.get("port"), _resources(vm.get("resources")), vm.get("vserver"),
                   vm.get("vcenter"), vm.get("description"), configured=True)

    def to_json(self) -> Tree:
        return asdict(self)

    @classmethod
    def from_json(cls, tree: Tree) -> Profile:
        known = {f.name for f in fields(cls)}
        args = {k: v for k, v in tree.items() if k in known}
        args["location"] = Location(**(tree.get("location") or {}))
        return cls(**args)

    def take_dynamic(self, old: Profile) -> None:
        """Keep where `old` runs, its state and figures (a configuration change)."""
        self.location, self.state, self.registered = old.location, old.state, old.registered
        self.last_change, self.monitoring = old.last_change, old.monitoring

    @property
    def where(self) -> str | None:
        """The vServer hosting the VM now, else the profile's vServer."""
        return self.location.vserver or self.vserver


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _resources(tree: Tree | None) -> dict[str, int]:
    return {k: int(v) for k, v in (tree or {}).items() if k in DEFAULT_RESOURCES}


@dataclass
class RegistrationOutcome:
    """What a registration or report did: the profile after it and the state before it."""

    profile: Profile
    created: bool = False
    previous_state: str | None = None


#: One VM of a bulk registration: (name, operation-result, error message, outcome when ok).
BulkResult = tuple[str, str, str | None, RegistrationOutcome | None]


class ProfileStore:
    """Tenants (from the configuration) and every VM profile, with lookup indexes."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantConfig] = {}
        self.profiles: dict[Key, Profile] = {}
        self._by_mac: dict[tuple[int, str], Key] = {}
        self._by_ip: dict[str, set[Key]] = {}

    # effective items ----------------------------------------------------------------------
    def vnid_of(self, p: Profile) -> int | None:
        if p.vnid is not None:
            return p.vnid
        tenant = self.tenants.get(p.tenant)
        return tenant.vnid if tenant else None

    def group_of(self, p: Profile) -> Group | None:
        tenant = self.tenants.get(p.tenant)
        return tenant.groups.get(p.vm_group or "") if tenant else None

    def vlan_of(self, p: Profile) -> int | None:
        if p.vlan is not None:
            return p.vlan
        group = self.group_of(p)
        return group.vlan if group else None

    def resources_of(self, p: Profile) -> dict[str, int]:
        group = self.group_of(p)
        return {**DEFAULT_RESOURCES, **(group.resources if group else {}), **p.resources}

    def policy_of(self, p: Profile) -> Tree:
        group = self.group_of(p)
        return group.policy() if group else {}

    # indexes ------------------------------------------------------------------------------
    def _index(self, p: Profile) -> None:
        vnid = self.vnid_of(p)
        if vnid is not None:
            self._by_mac[(vnid, p.mac)] = p.key
        for ip in p.ips:
            self._by_ip.setdefault(ip, set()).add(p.key)

    def _unindex(self, p: Profile) -> None:
        vnid = self.vnid_of(p)
        if vnid is not None and self._by_mac.get((vnid, p.mac)) == p.key:
            del self._by_mac[(vnid, p.mac)]
        for ip in p.ips:
            keys = self._by_ip.get(ip)
            if keys is not None:
                keys.discard(p.key)
                if not keys:
                    del self._by_ip[ip]

    def _reindex(self) -> None:
        self._by_mac.clear()
        self._by_ip.clear()
        for p in self.profiles.values():
            self._index(p)

    def put(self, p: Profile) -> None:
        """Insert or replace a profile (the caller checked it with :meth:`check`)."""
        old = self.profiles.get(p.key)
        if old is not None:
            self._unindex(old)
        self.profiles[p.key] = p
        self._index(p)

    def remove(self, key: Key) -> Profile | None:
        p = self.profiles.pop(key, None)
        if p is not None:
            self._unindex(p)
        return p

    # checks -------------------------------------------------------------------------------
    def tenant(self, name: str) -> TenantConfig:
        tenant = self.tenants.get(name)
        if tenant is None:
            raise ProfileError(f"unknown tenant {name!r}: configure it under "
                               "/vcenter/tenants first", "unknown-tenant")
        return tenant

    def check(self, p: Profile) -> None:
        """Refuse a profile that cannot be stored: unknown tenant or group, no VNID,
        a MAC address another VM of the VNI has."""
        tenant = self.tenant(p.tenant)
        if p.vm_group and p.vm_group not in tenant.groups:
            raise ProfileError(f"tenant {p.tenant!r} has no VM group {p.vm_group!r}",
                               "unknown-vm-group")
        vnid = self.vnid_of(p)
        if vnid is None:
            raise ProfileError(f"VM {p.tenant}/{p.name} needs a VNID: give one or configure "
                               f"the tenant's vnid", "no-vnid")
        holder = self._by_mac.get((vnid, p.mac))
        if holder is not None and holder != p.key:
            raise ProfileError(f"MAC address {p.mac} is already used by VM "
                               f"{holder[0]}/{holder[1]} in VNI {vnid}", "duplicate-mac",
                               result="already-exists", tag="data-exists")

    def check_ips(self, p: Profile, sharing: Key | None = None) -> None:
        """Refuse a profile with an IP address another VM of its VNI has (`sharing`: the one
        VM it may share them with, the source of a replication that ends it)."""
        vnid = self.vnid_of(p)
        for ip in p.ips:
            for holder in sorted(self._by_ip.get(ip, ())):
                other = self.profiles.get(holder)
                if holder in (p.key, sharing) or other is None or self.vnid_of(other) != vnid:
                    continue
                raise ProfileError(f"IP address {ip} is already used by VM "
                                   f"{holder[0]}/{holder[1]} in VNI {vnid}", "duplicate-ip",
                                   result="already-exists", tag="data-exists")

    def free_mac(self, p: Profile, tries: int = 64) -> str:
        """A MAC address for a VM created without one: derived from tenant/name (the same
        as the CLI's), the next derivation while another VM of the VNI holds it."""
        vnid = self.vnid_of(p)
        for attempt in range(tries):
            mac = derived_mac(p.tenant, p.name, attempt)
            holder = self._by_mac.get((vnid, mac)) if vnid is not None else None
            if holder is None or holder == p.key:
                return mac
        raise ProfileError(f"no free MAC address derived from {p.tenant}/{p.name} in VNI "
                           f"{vnid}: give its mac-address", "duplicate-mac", tag="data-exists")

    # configuration ------------------------------------------------------------------------
    def configure(self, tenants: dict[str, TenantConfig], configured: Iterable[Profile]) -> list[Key]:
        """Install the configuration's tenants and profiles; returns the learned profiles
        dropped (their tenant is gone). Raises ProfileError (nothing changed) when a
        configured profile's MAC is taken by a learned one in the same VNI."""
        new: dict[Key, Profile] = {}
        for p in configured:
            old = self.profiles.get(p.key)
            if old is not None:
                p.take_dynamic(old)
            new[p.key] = p
        dropped: list[Key] = []
        for key, old in self.profiles.items():
            if key in new:
                continue
            if key[0] not in tenants:
                dropped.append(key)
            elif not old.configured or old.registered:
                kept = copy.copy(old)
                kept.configured = False
                if kept.vnid is None:          # pin the VNID it ran with
                    kept.vnid = self.vnid_of(old)
                new[key] = kept
        trial = ProfileStore()
        trial.tenants = tenants
        for p in new.values():
            try:
                trial.check(p)
            except ProfileError as exc:
                if p.configured:
                    raise ProfileError(f"VM {p.tenant}/{p.name}: {exc}", exc.app_tag) from None
                raise
            trial.put(p)
        self.tenants, self.profiles = tenants, new
        self._by_mac, self._by_ip = trial._by_mac, trial._by_ip
        return dropped

    # registration -------------------------------------------------------------------------
    def register(self, vserver: str, tenant: str, name: str, mac: str, *,
                 vnid: int | None = None, vlan: int | None = None,
                 vm_group: str | None = None, ips: list[str] | None = None,
                 port: str | None = None, nve: str | None = None,
                 resources: dict[str, int] | None = None, state: str = "powered-on",
                 vcenter: str | None = None, now: float | None = None) -> RegistrationOutcome:
        """A vServer registers a VM: create or update its profile and location."""
        self.tenant(tenant)
        mac = canonical_mac(mac)
        old = self.profiles.get((tenant, name))
        if old is not None and old.configured and old.mac != mac:
            raise ProfileError(f"VM {tenant}/{name} has MAC address {old.mac} in its profile, "
                               f"not {mac}", "mac-address-mismatch",
                               alert="mac-address-mismatch")
        p = copy.deepcopy(old) if old is not None else Profile(tenant, name, mac)
        if not p.configured:
            p.mac = mac
            p.vnid = vnid if vnid is not None else p.vnid
            p.vlan = vlan if vlan is not None else p.vlan
            p.vm_group = vm_group or p.vm_group
            p.ips = list(ips) if ips else p.ips
            p.port = port or p.port
            p.resources = {**p.resources, **(resources or {})}
            p.vserver = vserver
            if p.vnid is None:
                p.vnid = self.tenants[tenant].vnid     # pin the VNID it was registered with
        previous = p.state
        p.location = Location(vserver, nve or (p.location.nve if p.location.vserver == vserver
                                               else None), vcenter)
        p.state, p.registered = state, True
        if previous != state or old is None or (old.location.vserver != vserver):
            p.last_change = now if now is not None else time.time()
        self.check(p)
        self.put(p)
        return RegistrationOutcome(p, created=old is None, previous_state=previous)

    def unregister(self, vserver: str, tenant: str, name: str,
                   mac: str | None = None) -> tuple[str, str | None, str | None]:
        """(result, message, alert kind) of a vServer's unregistration of one VM."""
        p = self.profiles.get((tenant, name))
        if p is None:
            return ("unknown-vm", f"vCenter has no VM {tenant}/{name}",
                    "unknown-vm-unregistration")
        given = None if mac is None else _mac_or_text(mac)
        if given is not None and given != p.mac:
            return ("rejected", f"VM {tenant}/{name} has MAC address {p.mac}, not {given}",
                    "mac-address-mismatch")
        if p.location.vserver not in (None, vserver):
            return ("ok", None, None)      # moved on (relocation): the source's farewell
        if p.configured:
            p.location, p.state, p.registered = Location(), None, False
            p.last_change = time.time()
        else:
            self.remove(p.key)
        return ("ok", None, None)

    def bulk_register(self, vserver: str, tenant: str, template: Tree, vms: list[Tree],
                      vcenter: str | None = None) -> list[BulkResult]:
        """Register every VM of one request; per VM (name, result, message, outcome)."""
        self.tenant(tenant)
        now = time.time()
        common = {"vnid": _int(template.get("vnid")), "vlan": _int(template.get("vlan")),
                  "vm_group": template.get("vm-group"), "nve": template.get("nve"),
                  "resources": _resources(template.get("resources")),
                  "state": template.get("state", "powered-on")}
        results: list[BulkResult] = []
        for vm in vms:
            items = dict(common)
            for leaf, arg in (("vnid", "vnid"), ("vlan", "vlan")):
                if vm.get(leaf) is not None:
                    items[arg] = int(vm[leaf])
            if vm.get("state"):
                items["state"] = vm["state"]
            try:
                out = self.register(vserver, tenant, vm["name"], vm["mac-address"],
                                    ips=list(vm.get("ip-address") or []), port=vm.get("port"),
                                    vcenter=vcenter, now=now, **items)
            except ProfileError as exc:
                results.append((vm["name"], exc.result, str(exc), None))
            else:
                results.append((vm["name"], "ok", None, out))
        return results

    def select_hosted(self, vserver: str, tenant: str | None = None,
                      vm_group: str | None = None) -> list[Key]:
        """The VMs located on `vserver` (of a tenant, of a group)."""
        return [p.key for p in self.profiles.values()
                if p.location.vserver == vserver and (tenant is None or p.tenant == tenant)
                and (vm_group is None or p.vm_group == vm_group)]

    # reports ------------------------------------------------------------------------------
    def report(self, vserver: str, tenant: str, name: str, state: str, nve: str | None,
               figures: Tree, stamp: str | None, now: float | None = None) -> RegistrationOutcome | None:
        """A vServer's report of one VM; None when the VM is unknown."""
        p = self.profiles.get((tenant, name))
        if p is None:
            return None
        previous = p.state
        if p.location.vserver in (None, vserver):
            if p.location.vserver is None:
                p.location = Location(vserver, nve)
            elif nve:
                p.location.nve = nve
            p.state, p.registered = state, True
            if previous != state:
                p.last_change = now if now is not None else time.time()
        p.monitoring = {k: figures[k] for k in MONITORING if figures.get(k) is not None}
        if stamp:
            p.monitoring["last-update"] = stamp
        return RegistrationOutcome(p, previous_state=previous)

    # lookup -------------------------------------------------------------------------------
    def lookup(self, tenant: str | None = None, vnid: int | None = None,
               name: str | None = None, mac: str | None = None,
               ip: str | None = None) -> list[Profile]:
        """Profiles by tenant and name, by MAC address or by IP address (filtered by tenant
        and VNID when given)."""
        if name is not None:
            keys: Iterable[Key] = [(tenant, name)] if tenant else \
                [k for k in self.profiles if k[1] == name]
        elif mac is not None:
            mac = _mac_or_text(mac)            # a malformed address matches nothing
            if vnid is not None:
                keys = [k for k in [self._by_mac.get((vnid, mac))] if k]
            else:
                keys = [k for (v, m), k in self._by_mac.items() if m == mac]
        elif ip is not None:
            keys = sorted(self._by_ip.get(ip, ()))
        else:
            keys = list(self.profiles)
        found = [self.profiles[k] for k in keys if k in self.profiles]
        return [p for p in found if (tenant is None or p.tenant == tenant)
                and (vnid is None or self.vnid_of(p) == vnid)]

    def member_count(self, tenant: str, group: str) -> int:
        return sum(1 for p in self.profiles.values() if p.tenant == tenant
                   and p.vm_group == group)

    # persistence --------------------------------------------------------------------------
    def dump(self) -> Tree:
        """Everything the configuration does not hold: learned profiles, and location, state
        and figures of every profile."""
        return {"version": 1, "profiles": [p.to_json() for p in self.profiles.values()]}

    def load(self, tree: Tree) -> None:
        """Restore :meth:`dump`; the next :meth:`configure` merges the configuration in."""
        self.profiles = {}
        for item in tree.get("profiles") or []:
            p = Profile.from_json(item)
            self.profiles[p.key] = p
        self._reindex()
