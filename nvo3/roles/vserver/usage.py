"""How much a VM uses: /proc figures of the processes in its namespace and its port's
counters, turned into the YANG monitoring figures by a :class:`UsageSampler` per VM."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nvo3.roles.vserver.processes import CLK_TCK, netns_inode

if TYPE_CHECKING:
    from nvo3.roles.vserver.vm_driver import Vm, VmDriver

NIC_BPS = 10_000_000_000                               # nominal vNIC speed (veth has none)
PAGE = os.sysconf("SC_PAGE_SIZE")


def pids_in_netns(inode: int) -> list[int]:
    """PIDs of the processes whose network namespace is the one with `inode`."""
    want = f"net:[{inode}]"
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/net") == want:
                    pids.append(int(entry.name))
    return pids


def cpu_ticks_and_rss(pids: list[int]) -> tuple[int, int]:
    """Sum of utime+stime (ticks) and resident memory (bytes) of `pids`."""
    ticks = rss = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])
            rss += int(fields[21]) * PAGE
    return ticks, rss


def boot_time() -> float:
    """When the machine booted (epoch seconds, from /proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def pct(value: float) -> str:
    """A nvo3t:percent (decimal64, 2 digits, 0..100) as RFC 7951 text."""
    return f"{min(100.0, max(0.0, value)):.2f}"


@dataclass
class _Sample:
    at: float
    ticks: int
    nic_bytes: int


@dataclass
class UsageSampler:
    """Monitoring figures of one VM from successive kernel samples (see :meth:`sample`)."""

    samples: int = 0
    up_samples: int = 0
    last: _Sample | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def sample(self, driver: VmDriver, vm: Vm, now: float | None = None) -> dict[str, Any]:
        """Sample `vm` now: CPU, memory and network use, availability, uptime; `running`
        and `at` besides (not YANG figures)."""
        now = time.time() if now is None else now
        running = driver.running(vm)
        self.samples += 1
        self.up_samples += running
        inode = netns_inode(vm.netns)
        pids = pids_in_netns(inode) if inode is not None else []
        ticks, rss = cpu_ticks_and_rss(pids)
        cur = _Sample(now, ticks, driver.links.port_bytes(vm.port))
        cpu = net = 0.0
        if self.last is not None and cur.at > self.last.at:
            dt = cur.at - self.last.at
            cpu = max(0, cur.ticks - self.last.ticks) / CLK_TCK / dt / vm.resources.vcpus * 100
            net = max(0, cur.nic_bytes - self.last.nic_bytes) * 8 / dt / NIC_BPS * 100
        self.last = cur
        mem = rss / (vm.resources.memory * 1024 * 1024) * 100
        uptime = 0
        if running and vm.pid_start is not None:
            uptime = max(0, int(now - (boot_time() + vm.pid_start / CLK_TCK)))
        self.figures = {
            "cpu-utilization": pct(cpu), "memory-utilization": pct(mem),
            "network-utilization": pct(net),
            "availability": pct(100.0 * self.up_samples / self.samples),
            "uptime": uptime, "running": running, "at": now,
        }
        return self.figures
