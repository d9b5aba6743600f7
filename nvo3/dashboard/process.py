"""The dashboard as a process of its own, for `nvo3 lab up` (started) and `lab down`
(stopped, by PID, only when that PID is still our dashboard)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nvo3.launcher import wait_ready_line

READY = "nvo3 dashboard ready: "


def start_dashboard(lab_state: Path, log_file: Path, listen: str = "127.0.0.1:0",
                    ready_timeout: float = 30.0) -> tuple[int, str]:
    """Start `nvo3 dashboard` for the lab at `lab_state`; (pid, URL) once it serves."""
    cmd = [sys.executable, "-m", "nvo3.cli", "dashboard", "--listen", listen,
           "--lab-state", str(lab_state.resolve())]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = wait_ready_line(proc, READY, ready_timeout)
    if line is None:
        tail = log_file.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the dashboard did not start:\n{tail}")
    assert proc.stdout is not None
    proc.stdout.close()       # nothing more is printed there
    return proc.pid, line.decode().removeprefix(READY).split()[0]


def is_dashboard(pid: int, lab_state: str) -> bool:
    """Whether `pid` is still the dashboard started for `lab_state`."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"dashboard" in cmd and lab_state.encode() in cmd
