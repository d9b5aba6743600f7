"""What the parts of the vServer role share: one lock, the configuration, the VMs with their
usage samplers and capacity ledger, the VM driver, the sessions to the NVE and the vCenter,
the flags the background thread works from, and the notifier.

Every field is read and written under `lock`; the vCenter is called without it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from nvo3.common import names
from nvo3.common.clock import iso
from nvo3.common.tree import Tree
from nvo3.netconf.client.session import RemoteRpcError
from nvo3.netconf.server.role_api import ApplyError, Notifier
from nvo3.roles.peers.sessions import PeerLink
from nvo3.roles.vserver.capacity import Ledger
from nvo3.roles.vserver.nve_entries import nve_edit, nve_entries
from nvo3.roles.vserver.usage import UsageSampler
from nvo3.roles.vserver.vm_driver import Vm, VmDriver

log = logging.getLogger(__name__)

MODULE = names.VSERVER
Key = tuple[str, str]
#: Profile items a vServer keeps as given (the rest it derives).
PROFILE_LEAVES = ("vnid", "vlan", "vm-group")


class VServerContext:
    """The vServer's shared state and the small steps every part takes."""

    def __init__(self, driver: VmDriver) -> None:
        self.driver = driver
        self.lock = threading.RLock()
        self.config: Tree = {}
        self.vms: dict[Key, Vm] = {}
        self.samplers: dict[Key, UsageSampler] = {}
        self.ledger = Ledger()
        self.nve = PeerLink("nve")
        self.vcenter = PeerLink("vcenter")
        self.unregister_queue: list[Tree] = []
        self.nve_dirty = True              # re-assert every VM's entries at the NVE
        self.report_due = True
        self.wake = threading.Event()      # the background thread has work
        self.notifier: Notifier | None = None

    # names ---------------------------------------------------------------------------------
    @property
    def vserver_name(self) -> str:
        """This vServer's configured name."""
        return str(self.config.get("name") or "vserver")

    @property
    def nve_name(self) -> str | None:
        """The name of the local NVE, when one is configured."""
        nve = self.config.get("nve")
        return str(nve["name"]) if nve else None

    def vm(self, tenant: str, name: str) -> Vm:
        """VM tenant/name of this vServer, or a refusal (data-missing)."""
        vm = self.vms.get((tenant, name))
        if vm is None:
            raise ApplyError(f"no VM {tenant}/{name} on vServer {self.vserver_name}",
                             tag="data-missing")
        return vm

    def figures(self, key: Key) -> dict[str, Any]:
        """The VM's last monitoring figures (empty before the first sample)."""
        sampler = self.samplers.get(key)
        return sampler.figures if sampler is not None else {}

    # state changes -------------------------------------------------------------------------
    def notify(self, vm: Vm, state: str, previous: str | None, reason: str) -> None:
        """Send the vm-state-change of `vm`; one that cannot be sent is logged."""
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

    def set_state(self, vm: Vm, state: str, reason: str) -> None:
        """`vm` is now in `state`: recorded, notified, and reported to the vCenter soon."""
        previous = vm.profile.get("state")
        vm.profile["state"] = state
        vm.profile["last-change"] = iso()
        self.notify(vm, state, previous if previous != state else None, reason)
        self.report_due = True

    def changed(self) -> None:
        """Something to report: the background thread reports to the vCenter now."""
        self.report_due = True
        self.wake.set()

    # the NVE -------------------------------------------------------------------------------
    def nve_call(self, ops: list[tuple[str, str, Tree]]) -> None:
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

    def attach(self, vm: Vm) -> None:
        """Merge the VM's network, attachment (state from its power state) and policy."""
        if self.config.get("nve") is None:
            vm.profile.pop("nve", None)
            vm.profile.pop("attachment-state", None)
            return
        network, att, policy = nve_entries(vm)
        ops = [("networks", "merge", network), ("attachments", "merge", att)]
        if policy:
            ops.append(("policies", "replace", policy))
        self.nve_call(ops)
        vm.profile["nve"] = self.nve_name
        vm.profile["attachment-state"] = att["state"]

    def detach(self, vm: Vm, vni: int | None = None, mac: str | None = None) -> None:
        """Remove the VM's attachment and policy at the NVE (by its old key when given)."""
        if self.config.get("nve") is None or vm.profile.get("attachment-state") is None:
            return
        key = {"vni": int(vni if vni is not None else vm.profile["vnid"]),
               "mac": mac or vm.mac}
        self.nve_call([("attachments", "remove", key), ("policies", "remove", key)])
        vm.profile.pop("attachment-state", None)

    def forget_at_nve(self, vni: int, mac: str) -> None:
        """Remove an attachment and policy by key; a failure is left to the resync."""
        key = {"vni": vni, "mac": mac}
        with contextlib.suppress(ApplyError):
            self.nve_call([("attachments", "remove", key), ("policies", "remove", key)])
