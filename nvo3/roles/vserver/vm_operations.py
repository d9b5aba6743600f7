"""The vServer's VM operations: create-vm, terminate-vm, modify-vm, relocate-vm and
replicate-vm, each under the role's lock.

Order of a creation (RFC 8394 split-NVE): capacity check, namespace + vNIC, NVE attachment
``associated`` (network merged too), workload started, attachment ``activated``. A failure
undoes the steps already done in reverse order: bad input or a refusal changes nothing. The
NVE is part of the operation: an NVE that cannot be reached or refuses fails the RPC (with
the NVE's reason). The vCenter is not: unregistrations are queued for the background thread.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from nvo3.common.clock import iso
from nvo3.common.mac import norm_mac
from nvo3.common.tree import Tree
from nvo3.netconf.server.role_api import ApplyError
from nvo3.roles.vserver.capacity import Resources
from nvo3.roles.vserver.context import PROFILE_LEAVES, VServerContext
from nvo3.roles.vserver.nve_entries import clean_policy, default_port
from nvo3.roles.vserver.usage import UsageSampler
from nvo3.roles.vserver.vm_driver import DriverError, Vm

log = logging.getLogger(__name__)


def _mac(text: str) -> str:
    """A MAC address from the input, canonical; a malformed one is refused (invalid-value)."""
    try:
        return norm_mac(text)
    except ValueError as exc:
        raise ApplyError(str(exc), tag="invalid-value") from None


@dataclass
class _Before:
    """A VM as it was before a modify-vm (what a rollback restores)."""

    profile: Tree
    mac: str
    ips: list[str]

    @property
    def was_on(self) -> bool:
        return self.profile.get("state") == "powered-on"


class VmOperations:
    """The nvo3-vserver RPCs on this host's VMs."""

    def __init__(self, ctx: VServerContext) -> None:
        self.ctx = ctx

    # RPCs ----------------------------------------------------------------------------------
    def create_vm(self, given: Tree) -> Tree:
        """Create a VM (powered on unless power-on is false)."""
        with self.ctx.lock:
            vm = self._build(given["tenant"], given["name"], given,
                             given.get("power-on", True) not in (False, "false"), "create")
            return self._out(vm)

    def terminate_vm(self, given: Tree) -> Tree:
        """Detach, stop and delete a VM."""
        with self.ctx.lock:
            self._remove(self.ctx.vm(given["tenant"], given["name"]), "terminate")
            return {"state": "deleted"}

    def relocate_vm(self, given: Tree) -> Tree:
        """One side of a relocation: the destination builds the VM, the source removes it."""
        ctx, tenant, name = self.ctx, given["tenant"], given["name"]
        with ctx.lock:
            if given["role"] == "destination":
                vm = self._build(tenant, name, given.get("profile") or {}, True, "relocate",
                                 first_state="migrating")
                return self._out(vm)
            vm = ctx.vm(tenant, name)
            previous = vm.profile.get("state")
            ctx.set_state(vm, "migrating", "relocate")
            try:
                self._remove(vm, "relocate")
            except ApplyError:
                ctx.set_state(vm, previous or "powered-on", "relocate")
                raise
            return {"vserver": ctx.vserver_name, "state": "deleted"}

    def replicate_vm(self, given: Tree) -> Tree:
        """One side of a replication: the source snapshots, the destination runs the copy."""
        ctx, tenant, name = self.ctx, given["tenant"], given["name"]
        with ctx.lock:
            if given["role"] == "source":
                vm = ctx.vm(tenant, name)           # snapshot; the VM keeps running
                vm.profile["last-snapshot"] = iso()
                ctx.driver.save(vm)
                return {**self._out(vm), "name": name}
            replica = given.get("replica-name") or name
            vm = self._build(tenant, replica, given.get("profile") or {}, True, "replicate",
                             extra={"replica-of": name})
            return {**self._out(vm), "name": replica}

    def _out(self, vm: Vm) -> Tree:
        out: Tree = {"vserver": self.ctx.vserver_name, "port": vm.port,
                     "state": vm.profile.get("state", "created")}
        if vm.profile.get("nve"):
            out["nve"] = vm.profile["nve"]
        return out

    # create --------------------------------------------------------------------------------
    def _check_new(self, tenant: str, name: str, mac: str, port: str, res: Resources) -> None:
        ctx = self.ctx
        if (tenant, name) in ctx.vms:
            raise ApplyError(f"VM {tenant}/{name} exists already on vServer "
                             f"{ctx.vserver_name}", tag="data-exists")
        for other in ctx.vms.values():
            if other.mac == mac:
                raise ApplyError(f"duplicate MAC {mac}: VM {other.tenant}/{other.name} on "
                                 f"vServer {ctx.vserver_name} has it", tag="invalid-value")
            if other.port == port:
                raise ApplyError(f"port {port} is VM {other.tenant}/{other.name}'s",
                                 tag="invalid-value")
        why = ctx.ledger.shortfall((tenant, name), res)
        if why:
            raise ApplyError(f"no capacity on vServer {ctx.vserver_name}: {why}",
                             tag="resource-denied")

    def _first_profile(self, profile: Tree, first_state: str, extra: Tree | None) -> Tree:
        """The role's profile of a new VM: the given items, policy, state, times."""
        prof: Tree = {k: profile[k] for k in PROFILE_LEAVES if profile.get(k) is not None}
        now = iso()
        prof.update({"vcenter": profile.get("vcenter") or (self.ctx.config.get("vcenter")
                                                           or {}).get("name"),
                     "policy": clean_policy(profile.get("policy")),
                     "state": first_state, "registered": False, "created": now,
                     "last-change": now, **(extra or {})})
        if prof["vcenter"] is None:
            del prof["vcenter"]
        return prof

    def _build(self, tenant: str, name: str, profile: Tree, power_on: bool, reason: str,
               first_state: str = "created", extra: Tree | None = None) -> Vm:
        """Create, associate, power on and activate a VM; undone on failure."""
        ctx = self.ctx
        mac = _mac(str(profile["mac-address"]))
        port = str(profile.get("port") or default_port(tenant, name))
        res = Resources.of(profile.get("resources"))
        self._check_new(tenant, name, mac, port, res)
        prof = self._first_profile(profile, first_state, extra)
        try:
            vm = ctx.driver.create(tenant, name, mac, list(profile.get("ip-address") or []),
                                   port, res, prof)
        except DriverError as exc:
            raise ApplyError(str(exc)) from None
        try:
            ctx.attach(vm)                          # associated
            if power_on:
                ctx.driver.power_on(vm)
                vm.profile["state"] = "powered-on"
                ctx.attach(vm)                      # activated
        except Exception as exc:
            with contextlib.suppress(Exception):
                ctx.detach(vm)
            ctx.driver.destroy(vm)
            if isinstance(exc, ApplyError):
                raise
            raise ApplyError(f"cannot start VM {tenant}/{name}: {exc}") from None
        ctx.vms[vm.key] = vm
        ctx.ledger.reserve(vm.key, res)
        ctx.samplers[vm.key] = UsageSampler()
        ctx.driver.save(vm)
        ctx.notify(vm, first_state, None, reason)
        if power_on:
            ctx.notify(vm, "powered-on", first_state, reason)
        ctx.changed()
        return vm

    # remove --------------------------------------------------------------------------------
    def _remove(self, vm: Vm, reason: str) -> None:
        """Deactivate and detach at the NVE, stop, delete, release, queue unregistration."""
        ctx = self.ctx
        previous = vm.profile.get("state")
        try:
            if vm.profile.get("attachment-state") == "activated":
                vm.profile["state"] = "migrating" if reason == "relocate" else "powered-off"
                ctx.attach(vm)                      # deactivated: associated
            ctx.detach(vm)
        except ApplyError:
            vm.profile["state"] = previous
            ctx.nve_dirty = True                    # re-assert what the VM had
            ctx.wake.set()
            raise
        ctx.driver.destroy(vm)
        ctx.vms.pop(vm.key, None)
        ctx.samplers.pop(vm.key, None)
        ctx.ledger.release(vm.key)
        if ctx.config.get("vcenter") is not None:
            ctx.unregister_queue.append({"vserver": ctx.vserver_name, "tenant": vm.tenant,
                                         "name": vm.name, "mac-address": vm.mac})
        vm.profile.pop("attachment-state", None)
        ctx.notify(vm, "deleted", previous, reason)
        ctx.changed()

    # modify --------------------------------------------------------------------------------
    def modify_vm(self, given: Tree) -> Tree:
        """Change a VM's resources, MAC, IPs, profile items, policy or power state."""
        ctx = self.ctx
        with ctx.lock:
            vm = ctx.vm(given["tenant"], given["name"])
            before = _Before(dict(vm.profile), vm.mac, list(vm.ips))
            new_res = vm.resources.merged(given.get("resources"))
            if new_res != vm.resources:
                why = ctx.ledger.shortfall(vm.key, new_res)
                if why:
                    raise ApplyError(f"no capacity on vServer {ctx.vserver_name}: {why}",
                                     tag="resource-denied")
            new_mac = _mac(str(given["mac-address"])) if given.get("mac-address") else vm.mac
            if new_mac != vm.mac and any(o.mac == new_mac for o in ctx.vms.values()):
                raise ApplyError(f"duplicate MAC {new_mac} on vServer {ctx.vserver_name}",
                                 tag="invalid-value")
            new_ips = list(given["ip-address"]) if given.get("ip-address") else list(vm.ips)
            power = given.get("power-state")
            on = before.was_on if power is None else power == "powered-on"
            profile = self._modified_profile(before.profile, given)
            self._change(vm, before, profile, on, new_mac, new_ips)
            vm.resources = new_res
            ctx.ledger.reserve(vm.key, new_res)
            vm.profile["last-change"] = iso()
            ctx.driver.save(vm)
            if vm.profile["state"] != before.profile.get("state"):
                ctx.notify(vm, vm.profile["state"], before.profile.get("state"), "modify")
            ctx.changed()
            return {"state": vm.profile["state"], "resources": new_res.as_tree()}

    @staticmethod
    def _modified_profile(old: Tree, given: Tree) -> Tree:
        profile = dict(old)
        profile.update({k: given[k] for k in PROFILE_LEAVES if given.get(k) is not None})
        if "policy" in given:
            profile["policy"] = clean_policy(given["policy"])
        if given.get("power-state") is not None:
            profile["state"] = given["power-state"]
        return profile

    def _change(self, vm: Vm, before: _Before, profile: Tree, on: bool, new_mac: str,
                new_ips: list[str]) -> None:
        """Make a modify-vm real (the NVE first, then the vNIC); rolled back on failure."""
        ctx = self.ctx
        new_key = (int(profile["vnid"]), new_mac)
        try:
            if new_key != (int(before.profile["vnid"]), before.mac):
                ctx.detach(vm, int(before.profile["vnid"]), before.mac)  # the key changes
            if on and not before.was_on:
                ctx.driver.power_on(vm)
            elif before.was_on and not on:
                ctx.driver.power_off(vm)
            vm.profile.update(profile)
            ctx.attach(_with(vm, new_mac, new_ips))
            if new_mac != before.mac:
                ctx.driver.set_mac(vm, new_mac)
            if new_ips != before.ips:
                ctx.driver.set_ips(vm, new_ips)
        except Exception as exc:
            self._rollback(vm, before, new_key)
            if isinstance(exc, ApplyError):
                raise
            raise ApplyError(f"cannot modify VM {vm.tenant}/{vm.name}: {exc}") from None

    def _rollback(self, vm: Vm, before: _Before, new_key: tuple[int, str]) -> None:
        """Put a VM back as it was before a failed modify-vm (best effort, logged)."""
        ctx = self.ctx
        try:
            if vm.mac != before.mac:
                ctx.driver.set_mac(vm, before.mac)
            if vm.ips != before.ips:
                ctx.driver.set_ips(vm, before.ips)
            if before.was_on and not ctx.driver.running(vm):
                ctx.driver.power_on(vm)
            elif not before.was_on and ctx.driver.running(vm):
                ctx.driver.power_off(vm)
            vm.profile.clear()
            vm.profile.update(before.profile)
            if new_key != (int(before.profile["vnid"]), before.mac):
                ctx.forget_at_nve(*new_key)
            ctx.attach(vm)
            ctx.driver.save(vm)
        except Exception:
            log.exception("VM %s/%s: rollback of modify-vm incomplete", vm.tenant, vm.name)
            ctx.nve_dirty = True


def _with(vm: Vm, mac: str, ips: list[str]) -> Vm:
    """A copy of `vm` with another MAC and IPs (same profile dict, shared)."""
    return Vm(vm.tenant, vm.name, vm.netns, vm.port, mac, list(ips), vm.resources, vm.profile,
              vm.pid, vm.pid_start)
