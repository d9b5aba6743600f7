"""The vServer agent role: the VMs of one host, and their life cycle over NETCONF.

The vCenter (or an operator) calls create-vm, terminate-vm, modify-vm, relocate-vm and
replicate-vm; each makes the VM real with :class:`~nvo3.roles.vserver.vm_driver.VmDriver` (a network
namespace with a vNIC into the host namespace that the NVE agent programs), attaches it at
the local NVE (module nvo3-nve, VM-to-network association) and queues its registration with
the vCenter (module nvo3-vcenter).

Design notes:

* Order of a creation (RFC 8394 split-NVE): capacity check, namespace + vNIC, NVE attachment
  ``associated`` (network merged too), workload started, attachment ``activated``. A failure
  undoes the steps already done in reverse order: bad input or a refusal changes nothing.
* The NVE is part of the operation: an NVE that cannot be reached or refuses fails the RPC
  (with the NVE's reason). The vCenter is not: registration, unregistration and reports are
  queued and sent by the background thread, outside the role's lock, so a vCenter that is down
  (or that is itself waiting for this vServer's reply) never blocks or fails an operation. A
  VM stays ``registered false`` until the vCenter acknowledges it; it is retried.
* What the NVE should hold for a VM is a pure function of the VM (:func:`nve_entries`): the
  attachment is ``activated`` exactly while the VM is powered on. After a restart, or when the
  NVE endpoint changes, the background thread re-asserts every VM's entries (idempotent merge).
* Monitoring: every MONITOR_S the background thread samples each VM (processes in its
  namespace from /proc, vNIC counters); a workload that died on its own turns the VM
  ``powered-off`` (vm-state-change, reason failure) and deactivates it at the NVE.
* Bulk registration: when the session to the vCenter comes up (and bulk-register-on-start),
  one bulk-register-vms per tenant (and VM group) carries every hosted VM; a vCenter without
  that RPC gets one register-vm per VM.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from nvo3.netconf.client.session import RemoteRpcError
from nvo3.netconf.server.role import ApplyError, ConfigChange, Notifier, Role, RpcHandler, Tree
from nvo3.roles.peers import codec as peer
from nvo3.roles.peers.links import PeerLink
from nvo3.roles.vserver.vm_driver import DriverError, Ledger, Monitor, Resources, Vm, VmDriver

log = logging.getLogger(__name__)

MODULE = "nvo3-vserver"
NVE_MODULE = "nvo3-nve"
VC_MODULE = "nvo3-vcenter"
MONITOR_S = 2.0
TICK_S = 0.2
Key = tuple[str, str]
PROFILE_LEAVES = ("vnid", "vlan", "vm-group")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_port(tenant: str, name: str) -> str:
    """A host interface name for a VM's vNIC: 15 characters, stable, unlikely to collide."""
    return "vm" + hashlib.sha1(f"{tenant}/{name}".encode()).hexdigest()[:13]


def _policy(tree: Tree | None) -> Tree:
    """The policy container without empty parts."""
    out: Tree = {}
    acl = (tree or {}).get("acl") or {}
    if acl.get("rule") or acl.get("default-action") not in (None, "permit"):
        out["acl"] = acl
    if (tree or {}).get("rate-limit"):
        out["rate-limit"] = tree["rate-limit"]  # type: ignore[index]
    return out


# -- what the NVE holds for a VM (pure) ------------------------------------------------------

def nve_entries(vm: Vm) -> tuple[Tree, Tree, Tree | None]:
    """(network, attachment, policy or None) of `vm` at its NVE, in nvo3-nve dict shape."""
    p = vm.profile
    vni = int(p["vnid"])
    att: Tree = {"vni": vni, "mac": vm.mac, "vm-id": vm.name, "port": vm.port,
                 "state": "activated" if p.get("state") == "powered-on" else "associated"}
    if vm.ips:
        att["ip-address"] = list(vm.ips)
    if p.get("vlan") is not None:
        att["vlan"] = int(p["vlan"])
    pol = _policy(p.get("policy"))
    policy = {"vni": vni, "mac": vm.mac, **pol} if pol else None
    return {"vni": vni}, att, policy


_NVE_LISTS = {"networks": "network", "attachments": "attachment", "policies": "policy"}


def nve_edit(ops: list[tuple[str, str, Tree]]) -> str:
    """One edit-config <config> for `ops`: (container, operation, entry), e.g.
    ("attachments", "merge", {...}); containers networks, attachments, policies, in that
    order (a network must exist before an attachment refers to it)."""
    order = list(_NVE_LISTS)
    ordered = sorted(ops, key=lambda o: order.index(o[0]))
    return peer.list_edit(NVE_MODULE, "nve",
                          [(c, _NVE_LISTS[c], op, entry) for c, op, entry in ordered])


# -- the role ---------------------------------------------------------------------------------

class VServerRole(Role):
    """The vServer agent of one host (the VMs' host-side ports live in `netns`)."""

    name = "vserver"
    modules = (MODULE,)

    def __init__(self, netns: str | None = None, state_dir: Path | str | None = None,
                 driver: VmDriver | None = None, monitor_interval: float = MONITOR_S) -> None:
        super().__init__()
        self.netns = netns
        self.driver = driver or VmDriver(Path(state_dir or "/var/lib/nvo3/vserver"), netns)
        self.monitor_interval = monitor_interval
        self.lock = threading.RLock()
        self.config: Tree = {}
        self.vms: dict[Key, Vm] = {}
        self.monitors: dict[Key, Monitor] = {}
        self.ledger = Ledger()
        self.nve = PeerLink("nve")
        self.vcenter = PeerLink("vcenter")
        self.unregister_queue: list[Tree] = []
        self.nve_dirty = True              # re-assert every VM's entries at the NVE
        self.report_due = True
        self._vc_ups_seen = 0
        self._last_report = 0.0
        self._last_monitor = 0.0
        self._register_at = 0.0            # refused or failed registrations wait until then
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- engine hooks ----------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)
        with self.lock:
            for vm in self.driver.discover():
                self.vms[vm.key] = vm
                self.ledger.reserve(vm.key, vm.resources)
                self.monitors[vm.key] = Monitor()
                was = vm.profile.get("state")
                vm.profile["registered"] = False
                if was == "powered-on" and vm.pid is None:   # died while the agent was down
                    self._set_state(vm, "powered-off", "failure")
                log.info("rediscovered VM %s/%s (%s)", vm.tenant, vm.name,
                         vm.profile.get("state"))
        self._thread = threading.Thread(target=self._run, name="vserver-bg", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.nve.close()
        self.vcenter.close()

    def apply(self, change: ConfigChange) -> None:
        cfg = change.after.get("vserver") or {}
        with self.lock:
            self.config = cfg
            self.ledger.set_capacity(cfg.get("capacity"))
            if self.nve.configure(cfg.get("nve")):
                self.nve_dirty = True
            if self.vcenter.configure(cfg.get("vcenter")):
                self._vc_ups_seen = self.vcenter.ups
                self.report_due = True
        self._wake.set()

    def rpc_handlers(self) -> dict[str, RpcHandler]:
        return {f"{MODULE}:create-vm": self.create_vm,
                f"{MODULE}:terminate-vm": self.terminate_vm,
                f"{MODULE}:modify-vm": self.modify_vm,
                f"{MODULE}:relocate-vm": self.relocate_vm,
                f"{MODULE}:replicate-vm": self.replicate_vm}

    # -- helpers ---------------------------------------------------------------------------
    @property
    def vserver_name(self) -> str:
        return str(self.config.get("name") or "vserver")

    @property
    def nve_name(self) -> str | None:
        nve = self.config.get("nve")
        return str(nve["name"]) if nve else None

    def _vm(self, tenant: str, name: str) -> Vm:
        vm = self.vms.get((tenant, name))
        if vm is None:
            raise ApplyError(f"no VM {tenant}/{name} on vServer {self.vserver_name}",
                             tag="data-missing")
        return vm

    def _notify(self, vm: Vm, state: str, previous: str | None, reason: str) -> None:
        if self.notifier is None:
            return
        content: Tree = {"tenant": vm.tenant, "name": vm.name, "vserver": self.vserver_name,
                         "state": state, "mac-address": vm.mac, "reason": reason}
        if previous:
            content["previous-state"] = previous
        if vm.profile.get("attachment-state"):
            content["attachment-state"] = vm.profile["attachment-state"]
        if vm.profile.get("nve"):
            content["nve"] = vm.profile["nve"]
        try:
            self.notifier.notify(MODULE, "vm-state-change", content)
        except Exception:
            log.exception("vm-state-change of %s/%s not sent", vm.tenant, vm.name)

    def _set_state(self, vm: Vm, state: str, reason: str) -> None:
        previous = vm.profile.get("state")
        vm.profile["state"] = state
        vm.profile["last-change"] = _now()
        self._notify(vm, state, previous if previous != state else None, reason)
        self.report_due = True

    def _nve_call(self, ops: list[tuple[str, str, Tree]]) -> None:
        """One edit-config at the NVE; a failure becomes an ApplyError with its reason."""
        if not ops or self.config.get("nve") is None:
            return
        xml = nve_edit(ops)
        try:
            self.nve.run(lambda c: c.edit_config(xml, target="running"))
        except RemoteRpcError as exc:
            raise ApplyError(f"NVE {self.nve_name} refused: {exc}", tag=exc.tag or
                             "operation-failed") from None
        except Exception as exc:
            raise ApplyError(f"NVE {self.nve_name} unreachable: {exc}") from None

    def _attach(self, vm: Vm) -> None:
        """Merge the VM's network, attachment (state from its power state) and policy."""
        if self.config.get("nve") is None:
            vm.profile.pop("nve", None)
            vm.profile.pop("attachment-state", None)
            return
        network, att, policy = nve_entries(vm)
        ops = [("networks", "merge", network), ("attachments", "merge", att)]
        if policy:
            ops.append(("policies", "replace", policy))
        self._nve_call(ops)
        vm.profile["nve"] = self.nve_name
        vm.profile["attachment-state"] = att["state"]

    def _detach(self, vm: Vm, vni: int | None = None, mac: str | None = None) -> None:
        if self.config.get("nve") is None or vm.profile.get("attachment-state") is None:
            return
        key = {"vni": int(vni if vni is not None else vm.profile["vnid"]),
               "mac": mac or vm.mac}
        self._nve_call([("attachments", "remove", key), ("policies", "remove", key)])
        vm.profile.pop("attachment-state", None)

    def _check_new(self, tenant: str, name: str, mac: str, port: str, res: Resources) -> None:
        if (tenant, name) in self.vms:
            raise ApplyError(f"VM {tenant}/{name} exists already on vServer "
                             f"{self.vserver_name}", tag="data-exists")
        for other in self.vms.values():
            if other.mac == mac.lower():
                raise ApplyError(f"duplicate MAC {mac}: VM {other.tenant}/{other.name} on "
                                 f"vServer {self.vserver_name} has it", tag="invalid-value")
            if other.port == port:
                raise ApplyError(f"port {port} is VM {other.tenant}/{other.name}'s",
                                 tag="invalid-value")
        why = self.ledger.shortfall((tenant, name), res)
        if why:
            raise ApplyError(f"no capacity on vServer {self.vserver_name}: {why}",
                             tag="resource-denied")

    def _build(self, tenant: str, name: str, profile: Tree, power_on: bool, reason: str,
               first_state: str = "created", extra: Tree | None = None) -> Vm:
        """Create, associate, power on and activate a VM; undone on failure."""
        mac = str(profile["mac-address"]).lower()
        port = str(profile.get("port") or default_port(tenant, name))
        res = Resources.of(profile.get("resources"))
        self._check_new(tenant, name, mac, port, res)
        prof: Tree = {k: profile[k] for k in PROFILE_LEAVES if profile.get(k) is not None}
        prof.update({"vcenter": profile.get("vcenter") or (self.config.get("vcenter") or {})
                     .get("name"), "policy": _policy(profile.get("policy")),
                     "state": first_state, "registered": False, "created": _now(),
                     "last-change": _now(), **(extra or {})})
        if prof["vcenter"] is None:
            del prof["vcenter"]
        try:
            vm = self.driver.create(tenant, name, mac, list(profile.get("ip-address") or []),
                                    port, res, prof)
        except DriverError as exc:
            raise ApplyError(str(exc)) from None
        try:
            self._attach(vm)                          # associated
            if power_on:
                self.driver.power_on(vm)
                vm.profile["state"] = "powered-on"
                self._attach(vm)                      # activated
        except Exception as exc:
            with contextlib.suppress(Exception):
                self._detach(vm)
            self.driver.destroy(vm)
            if isinstance(exc, ApplyError):
                raise
            raise ApplyError(f"cannot start VM {tenant}/{name}: {exc}") from None
        self.vms[vm.key] = vm
        self.ledger.reserve(vm.key, res)
        self.monitors[vm.key] = Monitor()
        self.driver.save(vm)
        self._notify(vm, first_state, None, reason)
        if power_on:
            self._notify(vm, "powered-on", first_state, reason)
        self.report_due = True
        self._wake.set()
        return vm

    def _remove(self, vm: Vm, reason: str) -> None:
        """Deactivate and detach at the NVE, stop, delete, release, queue unregistration."""
        previous = vm.profile.get("state")
        try:
            if vm.profile.get("attachment-state") == "activated":
                vm.profile["state"] = "migrating" if reason == "relocate" else "powered-off"
                self._attach(vm)                      # deactivated: associated
            self._detach(vm)
        except ApplyError:
            vm.profile["state"] = previous
            self.nve_dirty = True                     # re-assert what the VM had
            self._wake.set()
            raise
        self.driver.destroy(vm)
        self.vms.pop(vm.key, None)
        self.monitors.pop(vm.key, None)
        self.ledger.release(vm.key)
        if self.config.get("vcenter") is not None:
            self.unregister_queue.append({"vserver": self.vserver_name, "tenant": vm.tenant,
                                          "name": vm.name, "mac-address": vm.mac})
        vm.profile.pop("attachment-state", None)
        self._notify(vm, "deleted", previous, reason)
        self.report_due = True
        self._wake.set()

    def _out(self, vm: Vm) -> Tree:
        out: Tree = {"vserver": self.vserver_name, "port": vm.port,
                     "state": vm.profile.get("state", "created")}
        if vm.profile.get("nve"):
            out["nve"] = vm.profile["nve"]
        return out

    # -- RPCs ------------------------------------------------------------------------------
    def create_vm(self, given: Tree) -> Tree:
        with self.lock:
            vm = self._build(given["tenant"], given["name"], given,
                             given.get("power-on", True) not in (False, "false"), "create")
            return self._out(vm)

    def terminate_vm(self, given: Tree) -> Tree:
        with self.lock:
            self._remove(self._vm(given["tenant"], given["name"]), "terminate")
            return {"state": "deleted"}

    def modify_vm(self, given: Tree) -> Tree:
        with self.lock:
            vm = self._vm(given["tenant"], given["name"])
            old_profile, old_mac, old_ips = dict(vm.profile), vm.mac, list(vm.ips)
            new_res = vm.resources.merged(given.get("resources"))
            if new_res != vm.resources:
                why = self.ledger.shortfall(vm.key, new_res)
                if why:
                    raise ApplyError(f"no capacity on vServer {self.vserver_name}: {why}",
                                     tag="resource-denied")
            new_mac = str(given.get("mac-address") or vm.mac).lower()
            if new_mac != vm.mac and any(o.mac == new_mac for o in self.vms.values()):
                raise ApplyError(f"duplicate MAC {new_mac} on vServer {self.vserver_name}",
                                 tag="invalid-value")
            new_ips = list(given["ip-address"]) if given.get("ip-address") else list(vm.ips)
            power = given.get("power-state")
            was_on = old_profile.get("state") == "powered-on"
            on = was_on if power is None else power == "powered-on"
            profile = dict(old_profile)
            profile.update({k: given[k] for k in PROFILE_LEAVES if given.get(k) is not None})
            if "policy" in given:
                profile["policy"] = _policy(given["policy"])
            if power is not None:
                profile["state"] = power
            try:
                if (int(profile["vnid"]), new_mac) != (int(old_profile["vnid"]), old_mac):
                    self._detach(vm, int(old_profile["vnid"]), old_mac)  # the key changes
                if on and not was_on:
                    self.driver.power_on(vm)
                elif was_on and not on:
                    self.driver.power_off(vm)
                vm.profile.update(profile)
                self._attach(_with(vm, new_mac, new_ips))   # the NVE first, then the vNIC
                if new_mac != old_mac:
                    self.driver.set_mac(vm, new_mac)
                if new_ips != old_ips:
                    self.driver.set_ips(vm, new_ips)
            except Exception as exc:
                self._rollback(vm, old_profile, old_mac, old_ips, was_on,
                               (int(profile["vnid"]), new_mac))
                if isinstance(exc, ApplyError):
                    raise
                raise ApplyError(f"cannot modify VM {vm.tenant}/{vm.name}: {exc}") from None
            vm.resources = new_res
            self.ledger.reserve(vm.key, new_res)
            vm.profile["last-change"] = _now()
            self.driver.save(vm)
            if vm.profile["state"] != old_profile.get("state"):
                self._notify(vm, vm.profile["state"], old_profile.get("state"), "modify")
            self.report_due = True
            self._wake.set()
            return {"state": vm.profile["state"], "resources": new_res.as_tree()}

    def _rollback(self, vm: Vm, profile: Tree, mac: str, ips: list[str], was_on: bool,
                  new_key: tuple[int, str]) -> None:
        """Put a VM back as it was before a failed modify-vm (best effort, logged)."""
        try:
            if vm.mac != mac:
                self.driver.set_mac(vm, mac)
            if vm.ips != ips:
                self.driver.set_ips(vm, ips)
            if was_on and not self.driver.running(vm):
                self.driver.power_on(vm)
            elif not was_on and self.driver.running(vm):
                self.driver.power_off(vm)
            vm.profile.clear()
            vm.profile.update(profile)
            if new_key != (int(profile["vnid"]), mac):
                cur = {"vni": new_key[0], "mac": new_key[1]}
                with contextlib.suppress(ApplyError):
                    self._nve_call([("attachments", "remove", cur),
                                    ("policies", "remove", cur)])
            self._attach(vm)
            self.driver.save(vm)
        except Exception:
            log.exception("VM %s/%s: rollback of modify-vm incomplete", vm.tenant, vm.name)
            self.nve_dirty = True

    def relocate_vm(self, given: Tree) -> Tree:
        tenant, name = given["tenant"], given["name"]
        with self.lock:
            if given["role"] == "destination":
                vm = self._build(tenant, name, given.get("profile") or {}, True, "relocate",
                                 first_state="migrating")
                return self._out(vm)
            vm = self._vm(tenant, name)
            previous = vm.profile.get("state")
            self._set_state(vm, "migrating", "relocate")
            try:
                self._remove(vm, "relocate")
            except ApplyError:
                self._set_state(vm, previous or "powered-on", "relocate")
                raise
            return {"vserver": self.vserver_name, "state": "deleted"}

    def replicate_vm(self, given: Tree) -> Tree:
        tenant, name = given["tenant"], given["name"]
        with self.lock:
            if given["role"] == "source":
                vm = self._vm(tenant, name)           # snapshot; the VM keeps running
                vm.profile["last-snapshot"] = _now()
                self.driver.save(vm)
                return {**self._out(vm), "name": name}
            replica = given.get("replica-name") or name
            vm = self._build(tenant, replica, given.get("profile") or {}, True, "replicate",
                             extra={"replica-of": name})
            return {**self._out(vm), "name": replica}

    # -- state -----------------------------------------------------------------------------
    def state(self) -> Tree:
        with self.lock:
            top: Tree = {"load": self.ledger.load(),
                         "vms": {"vm": [self._vm_state(vm) for vm in self.vms.values()]}}
            if self.config.get("vcenter") is not None:
                top["vcenter"] = {"connection-state": self.vcenter.state}
            if self.config.get("nve") is not None:
                top["nve"] = {"connection-state": self.nve.state}
        return {MODULE: {"vserver": top}}

    def _vm_state(self, vm: Vm) -> Tree:
        p = vm.profile
        out: Tree = {"tenant": vm.tenant, "name": vm.name}
        for leaf in ("vcenter", *PROFILE_LEAVES):
            if p.get(leaf) is not None:
                out[leaf] = p[leaf]
        out.update({"mac-address": vm.mac, "port": vm.port,
                    "resources": vm.resources.as_tree(), "state": p.get("state", "created"),
                    "registered": bool(p.get("registered"))})
        if vm.ips:
            out["ip-address"] = list(vm.ips)
        if p.get("policy"):
            out["policy"] = p["policy"]
        for leaf in ("nve", "attachment-state", "replica-of", "created", "last-change"):
            if p.get(leaf):
                out[leaf] = p[leaf]
        figures = self.monitors.get(vm.key, Monitor()).figures
        if figures:
            out["monitoring"] = {"last-update": _iso(figures["at"]),
                                 **{k: v for k, v in figures.items()
                                    if k not in ("at", "running")}}
        return out

    # -- background: monitor, NVE resync, vCenter registration and reports ------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            try:
                if now - self._last_monitor >= self.monitor_interval:
                    self._last_monitor = now
                    self._monitor()
                if self.nve_dirty:
                    self._resync_nve()
                self._vcenter_work(now)
            except Exception:
                log.exception("background work failed")

    def _monitor(self) -> None:
        with self.lock:
            for key, vm in list(self.vms.items()):
                mon = self.monitors.setdefault(key, Monitor())
                figures = mon.sample(self.driver, vm)
                if vm.profile.get("state") == "powered-on" and not figures["running"]:
                    log.warning("VM %s/%s: workload gone; powered off", vm.tenant, vm.name)
                    vm.pid = vm.pid_start = None
                    self._set_state(vm, "powered-off", "failure")
                    self.driver.save(vm)
                    self.nve_dirty = True

    def _resync_nve(self) -> None:
        with self.lock:
            if self.config.get("nve") is None:
                self.nve_dirty = False
                return
            try:
                for vm in self.vms.values():
                    self._attach(vm)
                    self.driver.save(vm)
                self.nve_dirty = False
            except ApplyError as exc:
                log.warning("NVE resync pending: %s", exc)

    def _vcenter_work(self, now: float) -> None:
        with self.lock:
            vc = self.config.get("vcenter")
            if vc is None:
                self.unregister_queue.clear()
                return
            interval = float(vc.get("report-interval", 30))
            bulk = vc.get("bulk-register-on-start", True) not in (False, "false")
            pending = [self._register_input(vm) for vm in self.vms.values()
                       if not vm.profile.get("registered")] if now >= self._register_at else []
            unregister = list(self.unregister_queue)
            due = self.report_due or now - self._last_report >= interval
        if not (pending or unregister or due):
            return
        try:
            self.vcenter.run(lambda c: None, wait=False)          # connect if needed
        except Exception as exc:
            log.debug("vCenter: %s", exc)
            return
        if self.vcenter.ups != self._vc_ups_seen:                 # a new session
            self._vc_ups_seen = self.vcenter.ups
            if bulk and pending:
                pending = self._bulk_register(pending)
        if pending and not all([self._register(item) for item in pending]):
            self._register_at = time.monotonic() + min(interval, 5.0)
        for item in unregister:
            try:
                out = self.vcenter.run(lambda c: peer.call(c, VC_MODULE, "unregister-vm", item))
                log.info("unregistered %s/%s: %s", item["tenant"], item["name"],
                         out.get("result"))
            except RemoteRpcError as exc:
                log.warning("unregister-vm %s/%s refused: %s", item["tenant"], item["name"],
                            exc)
            except Exception:
                return
            with self.lock, contextlib.suppress(ValueError):
                self.unregister_queue.remove(item)
        if due:
            self._report()

    def _register_input(self, vm: Vm) -> Tree:
        p = vm.profile
        item: Tree = {"vserver": self.vserver_name, "tenant": vm.tenant, "name": vm.name,
                      "mac-address": vm.mac, "port": vm.port,
                      "resources": vm.resources.as_tree(), "state": p.get("state", "created")}
        for leaf in PROFILE_LEAVES:
            if p.get(leaf) is not None:
                item[leaf] = p[leaf]
        if vm.ips:
            item["ip-address"] = list(vm.ips)
        if p.get("nve"):
            item["nve"] = p["nve"]
        return item

    def _mark(self, tenant: str, name: str, registered: bool) -> None:
        with self.lock:
            vm = self.vms.get((tenant, name))
            if vm is not None and bool(vm.profile.get("registered")) != registered:
                vm.profile["registered"] = registered
                self.driver.save(vm)

    def _register(self, item: Tree) -> bool:
        """register-vm of one VM; True when the vCenter acknowledged it."""
        try:
            out = self.vcenter.run(lambda c: peer.call(c, VC_MODULE, "register-vm", item))
        except RemoteRpcError as exc:
            log.warning("register-vm %s/%s refused: %s", item["tenant"], item["name"], exc)
            return False
        except Exception as exc:
            log.info("register-vm %s/%s: vCenter unreachable (%s)", item["tenant"],
                     item["name"], exc)
            return False
        ok = out.get("result", "ok") in ("ok", "already-exists")
        self._mark(item["tenant"], item["name"], ok)
        return ok

    def _bulk_register(self, pending: list[Tree]) -> list[Tree]:
        """One bulk-register-vms per (tenant, vm-group); what is left for register-vm."""
        groups: dict[tuple[str, str | None], list[Tree]] = {}
        for item in pending:
            groups.setdefault((item["tenant"], item.get("vm-group")), []).append(item)
        left: list[Tree] = []
        for (tenant, group), items in groups.items():
            template: Tree = {"resources": items[0]["resources"]}
            if group:
                template["vm-group"] = group
            if self.nve_name:
                template["nve"] = self.nve_name
            vms = []
            for it in items:
                entry = {"name": it["name"], "mac-address": it["mac-address"],
                         "state": it["state"]}
                for leaf in ("ip-address", "vnid", "vlan"):
                    if it.get(leaf) is not None:
                        entry[leaf] = it[leaf]
                vms.append(entry)
            request = {"vserver": self.vserver_name, "tenant": tenant, "template": template,
                       "vm": vms}
            try:
                out = self.vcenter.run(
                    lambda c: peer.call(c, VC_MODULE, "bulk-register-vms", request))
            except RemoteRpcError as exc:
                log.warning("bulk-register-vms (%s, %d VMs) refused: %s; one by one", tenant,
                            len(items), exc)
                left.extend(items)
                continue
            except Exception:
                left.extend(items)
                continue
            results = {r["name"]: r.get("result") for r in out.get("vm", [])}
            log.info("bulk-register-vms %s: %s registered, %s failed", tenant,
                     out.get("registered"), out.get("failed"))
            for it in items:
                self._mark(tenant, it["name"], results.get(it["name"], "ok") in
                           ("ok", "already-exists"))
        return left

    def report_input(self) -> Tree:
        with self.lock:
            vms = []
            for vm in self.vms.values():
                entry: Tree = {"tenant": vm.tenant, "name": vm.name,
                               "state": vm.profile.get("state", "created")}
                if vm.profile.get("nve"):
                    entry["nve"] = vm.profile["nve"]
                figures = self.monitors.get(vm.key, Monitor()).figures
                entry.update({k: v for k, v in figures.items() if k not in ("at", "running")})
                vms.append(entry)
            out: Tree = {"vserver": self.vserver_name, "timestamp": _now(),
                         "load": self.ledger.load()}
            if vms:
                out["vm"] = vms
            return out

    def _report(self) -> None:
        with self.lock:
            self.report_due = False
        request = self.report_input()
        try:
            out = self.vcenter.run(lambda c: peer.call(c, VC_MODULE, "report-vm", request))
        except RemoteRpcError as exc:
            log.warning("report-vm refused: %s", exc)
            self._last_report = time.monotonic()
            return
        except Exception:
            with self.lock:
                self.report_due = True
            return
        self._last_report = time.monotonic()
        for unknown in out.get("unknown-vm", []):
            self._mark(unknown["tenant"], unknown["name"], False)


def _with(vm: Vm, mac: str, ips: list[str]) -> Vm:
    """A copy of `vm` with another MAC and IPs (same profile dict, shared)."""
    return Vm(vm.tenant, vm.name, vm.netns, vm.port, mac, list(ips), vm.resources, vm.profile,
              vm.pid, vm.pid_start)
