"""The vServer's side of the vServer-to-vCenter interface: registration (one VM, or in bulk
when a session comes up), unregistration and periodic reports, sent by the background thread.

Nothing here fails a VM operation: a vCenter that is down (or that is itself waiting for this
vServer's reply) only delays the work. A VM stays ``registered false`` until the vCenter
acknowledges it; it is retried. When the session to the vCenter comes up (and
bulk-register-on-start), one bulk-register-vms per tenant (and VM group) carries every hosted
VM; a vCenter without that RPC gets one register-vm per VM.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from nvo3.common import names
from nvo3.common.clock import iso
from nvo3.common.tree import Tree
from nvo3.netconf.client.session import RemoteRpcError
from nvo3.roles.peers import codec as peer
from nvo3.roles.vserver.context import PROFILE_LEAVES, VServerContext
from nvo3.roles.vserver.vm_driver import Vm

log = logging.getLogger(__name__)

VC_MODULE = names.VCENTER


class VCenterReporter:
    """Registers, unregisters and reports this vServer's VMs at its vCenter."""

    def __init__(self, ctx: VServerContext) -> None:
        self.ctx = ctx
        self.ups_seen = 0                  # vCenter sessions seen (a new one: bulk register)
        self.last_report = 0.0
        self.register_at = 0.0             # refused or failed registrations wait until then

    def _call(self, rpc: str, given: Tree) -> Any:
        return self.ctx.vcenter.run(lambda c: peer.call(c, VC_MODULE, rpc, given))

    def work(self, now: float) -> None:
        """One round: registrations due, queued unregistrations, a report when due."""
        ctx = self.ctx
        with ctx.lock:
            vc = ctx.config.get("vcenter")
            if vc is None:
                ctx.unregister_queue.clear()
                return
            interval = float(vc.get("report-interval", 30))
            bulk = vc.get("bulk-register-on-start", True) not in (False, "false")
            pending = [self.register_input(vm) for vm in ctx.vms.values()
                       if not vm.profile.get("registered")] if now >= self.register_at else []
            unregister = list(ctx.unregister_queue)
            due = ctx.report_due or now - self.last_report >= interval
        if not (pending or unregister or due):
            return
        try:
            ctx.vcenter.run(lambda c: None, wait=False)          # connect if needed
        except Exception as exc:
            log.debug("vCenter: %s", exc)
            return
        if ctx.vcenter.ups != self.ups_seen:                     # a new session
            self.ups_seen = ctx.vcenter.ups
            if bulk and pending:
                pending = self._bulk_register(pending)
        registered = [self._register(item) for item in pending]    # each one, even after a failure
        if not all(registered):
            self.register_at = time.monotonic() + min(interval, 5.0)
        if not self._unregister(unregister):
            return
        if due:
            self._report()

    def _unregister(self, items: list[Tree]) -> bool:
        """unregister-vm of each queued VM; False when the vCenter became unreachable."""
        for item in items:
            try:
                out = self._call("unregister-vm", item)
                log.info("unregistered %s/%s: %s", item["tenant"], item["name"],
                         out.get("result"))
            except RemoteRpcError as exc:
                log.warning("unregister-vm %s/%s refused: %s", item["tenant"], item["name"],
                            exc)
            except Exception:
                return False
            with self.ctx.lock, contextlib.suppress(ValueError):
                self.ctx.unregister_queue.remove(item)
        return True

    # registration --------------------------------------------------------------------------
    def register_input(self, vm: Vm) -> Tree:
        """The register-vm input for `vm`."""
        p = vm.profile
        item: Tree = {"vserver": self.ctx.vserver_name, "tenant": vm.tenant, "name": vm.name,
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
        with self.ctx.lock:
            vm = self.ctx.vms.get((tenant, name))
            if vm is not None and bool(vm.profile.get("registered")) != registered:
                vm.profile["registered"] = registered
                self.ctx.driver.save(vm)

    def _register(self, item: Tree) -> bool:
        """register-vm of one VM; True when the vCenter acknowledged it."""
        try:
            out = self._call("register-vm", item)
        except RemoteRpcError as exc:
            log.warning("register-vm %s/%s refused: %s", item["tenant"], item["name"], exc)
            return False
        except Exception as exc:
            log.info("register-vm %s/%s: vCenter unreachable (%s)", item["tenant"],
                     item["name"], exc)
            return False
        ok = out.get("result", "ok") in ("ok", "already-exists")
        self._mark(item["tenant"], item["name"], ok)
        return bool(ok)

    def _bulk_request(self, tenant: str, group: str | None, items: list[Tree]) -> Tree:
        template: Tree = {"resources": items[0]["resources"]}
        if group:
            template["vm-group"] = group
        if self.ctx.nve_name:
            template["nve"] = self.ctx.nve_name
        vms = []
        for it in items:
            entry = {"name": it["name"], "mac-address": it["mac-address"], "state": it["state"]}
            for leaf in ("ip-address", "vnid", "vlan"):
                if it.get(leaf) is not None:
                    entry[leaf] = it[leaf]
            vms.append(entry)
        return {"vserver": self.ctx.vserver_name, "tenant": tenant, "template": template,
                "vm": vms}

    def _bulk_register(self, pending: list[Tree]) -> list[Tree]:
        """One bulk-register-vms per (tenant, vm-group); what is left for register-vm."""
        groups: dict[tuple[str, str | None], list[Tree]] = {}
        for item in pending:
            groups.setdefault((item["tenant"], item.get("vm-group")), []).append(item)
        left: list[Tree] = []
        for (tenant, group), items in groups.items():
            try:
                out = self._call("bulk-register-vms", self._bulk_request(tenant, group, items))
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

    # reports -------------------------------------------------------------------------------
    def report_input(self) -> Tree:
        """The report-vm input: load, and each VM's state and figures."""
        ctx = self.ctx
        with ctx.lock:
            vms = []
            for vm in ctx.vms.values():
                entry: Tree = {"tenant": vm.tenant, "name": vm.name,
                               "state": vm.profile.get("state", "created")}
                if vm.profile.get("nve"):
                    entry["nve"] = vm.profile["nve"]
                entry.update({k: v for k, v in ctx.figures(vm.key).items()
                              if k not in ("at", "running")})
                vms.append(entry)
            out: Tree = {"vserver": ctx.vserver_name, "timestamp": iso(),
                         "load": ctx.ledger.load()}
            if vms:
                out["vm"] = vms
            return out

    def _report(self) -> None:
        with self.ctx.lock:
            self.ctx.report_due = False
        request = self.report_input()
        try:
            out = self._call("report-vm", request)
        except RemoteRpcError as exc:
            log.warning("report-vm refused: %s", exc)
            self.last_report = time.monotonic()
            return
        except Exception:
            with self.ctx.lock:
                self.ctx.report_due = True
            return
        self.last_report = time.monotonic()
        for unknown in out.get("unknown-vm", []):
            self._mark(unknown["tenant"], unknown["name"], False)

