"""What /proc says about a VM's processes and namespace (no netlink): a process's start
time, a named network namespace's inode, whether a process lives in it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def netns_inode(name: str) -> int | None:
    """The inode of named network namespace `name`, None when it does not exist."""
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def in_netns(pid: int, inode: int | None) -> bool:
    """Process `pid` lives in the network namespace with `inode`."""
    with contextlib.suppress(OSError):
        return inode is not None and os.readlink(f"/proc/{pid}/ns/net") == f"net:[{inode}]"
    return False
