"""Start role daemons as their own processes (for the lab, the demo, benchmarks and tests).

Each daemon is `python -m nvo3.cli serve ROLE` with its own state directory, a user created
beforehand, and its real port and host key read from its ready line. Only processes started
here are ever signalled, by their PID.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvo3.daemon import users_of
from nvo3.netconf.client.session import Client, connect

READY = "nvo3 ready: "


@dataclass
class RoleProcess:
    """A running role daemon and how to reach it."""

    role: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    host: str
    port: int
    host_key: str
    username: str
    password: str = field(repr=False)
    metrics: str | None = None      # HOST:PORT of /metrics and /healthz (serve --metrics)

    @property
    def pid(self) -> int:
        return self.process.pid

    def connect(self, **kwargs: Any) -> Client:
        """A verified session to this daemon (host key from its ready line)."""
        return connect(self.host, self.port, self.username, self.password,
                       host_key=self.host_key, **kwargs)

    def rss_bytes(self) -> int:
        """Resident memory of the daemon, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL (a crash, for recovery tests)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def wait_ready_line(proc: subprocess.Popen[bytes], prefix: str, timeout: float) -> bytes | None:
    """The first line of `proc`'s standard output that starts with `prefix`; None when the
    process ends or `timeout` passes first (the process is then killed)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if line.startswith(prefix.encode()):
                return line
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    return None


def start_role(role: str, state_dir: Path, host: str = "127.0.0.1", port: int = 0,
               username: str = "admin", password: str | None = None,
               ready_timeout: float = 30.0, log_file: Path | None = None,
               extra_args: tuple[str, ...] = (), new_session: bool = False,
               global_args: tuple[str, ...] = (), recovery: bool = True) -> RoleProcess:
    """Start `nvo3 serve ROLE` and wait for its ready line; `global_args` go before `serve`
    (--log-format, --log-file, --log-level), `extra_args` after it.

    The user it creates is a NACM recovery user unless `recovery` is False: the launcher's
    user is the one role-to-role traffic and tests administer the daemon with.

    `new_session`: the daemon gets a session of its own (a lab outlives the command that
    started it, and a Ctrl-C at the terminal reaches only that command).
    """
    state_dir = Path(state_dir)
    # hex: a generated password never starts with "-" (it is pasted into command lines)
    password = password or secrets.token_hex(16)
    users_of(state_dir).add(username, password=password, recovery=recovery)
    cmd = [sys.executable, "-m", "nvo3.cli", *global_args, "serve", role, "--listen", f"{host}:{port}",
           "--state-dir", str(state_dir), *extra_args]
    with open(log_file or state_dir / "daemon.log", "ab") as log:   # the daemon keeps its copy
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=new_session)
    line = wait_ready_line(proc, READY, ready_timeout)
    if line is None:
        tail = (state_dir / "daemon.log").read_text(errors="replace")[-2000:] \
            if log_file is None else ""
        raise RuntimeError(f"nvo3 serve {role} did not become ready:\n{tail}")
    # "nvo3 ready: ROLE on HOST port N host-key TYPE BASE64"
    words = line.decode().split()
    real_port = int(words[words.index("port") + 1])
    key_at = words.index("host-key")
    host_key = " ".join(words[key_at + 1:key_at + 3])
    metrics = words[words.index("metrics") + 1] if "metrics" in words else None
    return RoleProcess(role, state_dir, proc, host, real_port, host_key, username, password,
                       metrics)
