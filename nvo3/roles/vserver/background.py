"""The vServer's background thread: VM monitoring, NVE resync and the work with the vCenter.

* Monitoring: every `monitor_interval` seconds each VM is sampled (processes in its namespace
  from /proc, vNIC counters); a workload that died on its own turns the VM ``powered-off``
  (vm-state-change, reason failure) and deactivates it at the NVE.
* NVE resync: after a restart, or when the NVE endpoint changes, every VM's entries are
  re-asserted (idempotent merge) until the NVE takes them.
* The vCenter: registrations, unregistrations and reports (:class:`VCenterReporter`).
"""

from __future__ import annotations

import logging
import threading
import time

from nvo3.netconf.server.role_api import ApplyError
from nvo3.roles.vserver.context import VServerContext
from nvo3.roles.vserver.reporting import VCenterReporter
from nvo3.roles.vserver.usage import UsageSampler

log = logging.getLogger(__name__)

MONITOR_S = 2.0
TICK_S = 0.2


class Background:
    """The thread that monitors VMs, resyncs the NVE and talks to the vCenter."""

    def __init__(self, ctx: VServerContext, reporter: VCenterReporter,
                 monitor_interval: float = MONITOR_S) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.monitor_interval = monitor_interval
        self._last_monitor = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="vserver-bg", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits up to 10 s for the round under way)."""
        self._stop.set()
        self.ctx.wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        ctx = self.ctx
        while not self._stop.is_set():
            ctx.wake.wait(TICK_S)
            ctx.wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            try:
                if now - self._last_monitor >= self.monitor_interval:
                    self._last_monitor = now
                    self.monitor()
                if ctx.nve_dirty:
                    self.resync_nve()
                self.reporter.work(now)
            except Exception:
                log.exception("background work failed")

    def monitor(self) -> None:
        """Sample every VM; a powered-on VM whose workload is gone is powered off."""
        ctx = self.ctx
        with ctx.lock:
            for key, vm in list(ctx.vms.items()):
                sampler = ctx.samplers.setdefault(key, UsageSampler())
                figures = sampler.sample(ctx.driver, vm)
                if vm.profile.get("state") == "powered-on" and not figures["running"]:
                    log.warning("VM %s/%s: workload gone; powered off", vm.tenant, vm.name)
                    vm.pid = vm.pid_start = None
                    ctx.set_state(vm, "powered-off", "failure")
                    ctx.driver.save(vm)
                    ctx.nve_dirty = True

    def resync_nve(self) -> None:
        """Re-assert every VM's entries at the NVE; stays pending while the NVE fails."""
        ctx = self.ctx
        with ctx.lock:
            if ctx.config.get("nve") is None:
                ctx.nve_dirty = False
                return
            try:
                for vm in ctx.vms.values():
                    ctx.attach(vm)
                    ctx.driver.save(vm)
                ctx.nve_dirty = False
            except ApplyError as exc:
                log.warning("NVE resync pending: %s", exc)
