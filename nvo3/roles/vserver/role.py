"""The vServer agent role: the VMs of one host, and their life cycle over NETCONF.

The vCenter (or an operator) calls create-vm, terminate-vm, modify-vm, relocate-vm and
replicate-vm (operations.py); each makes the VM real with
:class:`~nvo3.roles.vserver.vm_driver.VmDriver` (a network namespace with a vNIC into the host
namespace that the NVE agent programs), attaches it at the local NVE (module nvo3-nve,
VM-to-network association) and queues its registration with the vCenter (module
nvo3-vcenter), which the background thread sends (background.py, reporting.py).

This module only wires the parts together: the shared context (context.py), the
configuration, the rediscovery of VMs at start, the state (state.py) and the RPC table.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nvo3.common.tree import Tree
from nvo3.netconf.server.role_api import ConfigChange, Notifier, Role, RpcHandler
from nvo3.roles.vserver.background import MONITOR_S, Background
from nvo3.roles.vserver.context import MODULE, VServerContext
from nvo3.roles.vserver.reporting import VCenterReporter
from nvo3.roles.vserver.state import state_tree
from nvo3.roles.vserver.usage import UsageSampler
from nvo3.roles.vserver.vm_driver import VmDriver
from nvo3.roles.vserver.vm_operations import VmOperations

log = logging.getLogger(__name__)


class VServerRole(Role):
    """The vServer agent of one host (the VMs' host-side ports live in `netns`)."""

    name = "vserver"
    modules = (MODULE,)

    def __init__(self, netns: str | None = None, state_dir: Path | str | None = None,
                 driver: VmDriver | None = None, monitor_interval: float = MONITOR_S) -> None:
        super().__init__()
        self.netns = netns
        self.ctx = VServerContext(driver or VmDriver(Path(state_dir or "/var/lib/nvo3/vserver"),
                                                     netns))
        self.operations = VmOperations(self.ctx)
        self.reporter = VCenterReporter(self.ctx)
        self.background = Background(self.ctx, self.reporter, monitor_interval)

    # -- engine hooks ----------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)
        ctx = self.ctx
        ctx.notifier = notifier
        with ctx.lock:
            for vm in ctx.driver.discover():
                ctx.vms[vm.key] = vm
                ctx.ledger.reserve(vm.key, vm.resources)
                ctx.samplers[vm.key] = UsageSampler()
                was = vm.profile.get("state")
                vm.profile["registered"] = False
                if was == "powered-on" and vm.pid is None:   # died while the agent was down
                    ctx.set_state(vm, "powered-off", "failure")
                log.info("rediscovered VM %s/%s (%s)", vm.tenant, vm.name,
                         vm.profile.get("state"))
        self.background.start()

    def stop(self) -> None:
        self.background.stop()
        self.ctx.nve.close()
        self.ctx.vcenter.close()

    def apply(self, change: ConfigChange) -> None:
        ctx = self.ctx
        cfg = change.after.get("vserver") or {}
        with ctx.lock:
            ctx.config = cfg
            ctx.ledger.set_capacity(cfg.get("capacity"))
            if ctx.nve.configure(cfg.get("nve")):
                ctx.nve_dirty = True
            if ctx.vcenter.configure(cfg.get("vcenter")):
                self.reporter.ups_seen = ctx.vcenter.ups
                ctx.report_due = True
        ctx.wake.set()

    def rpc_handlers(self) -> dict[str, RpcHandler]:
        ops = self.operations
        return {f"{MODULE}:create-vm": ops.create_vm,
                f"{MODULE}:terminate-vm": ops.terminate_vm,
                f"{MODULE}:modify-vm": ops.modify_vm,
                f"{MODULE}:relocate-vm": ops.relocate_vm,
                f"{MODULE}:replicate-vm": ops.replicate_vm}

    def state(self) -> Tree:
        return state_tree(self.ctx)
