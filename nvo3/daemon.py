"""Run one role as a NETCONF/SSH server: engine + users + SSH listener, until signalled."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from nvo3 import allocator
from nvo3.netconf.limits import ServerLimits
from nvo3.netconf.server.engine import NetconfServer
from nvo3.netconf.ssh.listener import SshServer, host_key_line
from nvo3.netconf.ssh.users import UserStore
from nvo3.observability.address import MetricsAddress
from nvo3.observability.wiring import Observability
from nvo3.roles import make_role

log = logging.getLogger(__name__)

DEFAULT_PORT = 830
HOST_KEY_FILE = "ssh_host_ed25519_key"
USERS_FILE = "users.json"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """HOST:PORT, [IPv6]:PORT, HOST (port 830) or :PORT (127.0.0.1)."""
        host, port = text, str(DEFAULT_PORT)
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":"):
                port = rest[1:]
        elif text.count(":") == 1:
            host, port = text.split(":")
        host = host or "127.0.0.1"
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bad port in {text!r}: expected 0..65535")
        return cls(host, int(port))


def users_of(state_dir: Path) -> UserStore:
    return UserStore(Path(state_dir) / USERS_FILE)


class RoleDaemon:
    """One role's engine and SSH server; `start` returns once sessions are accepted.

    A role daemon is a process of its own: it sets that process's C allocator up for a long
    life (see :mod:`nvo3.allocator`) before anything else, and gives the free memory of each
    ended session back to the system."""

    def __init__(self, role_name: str, state_dir: Path, listen: Listen,
                 netns: str | None = None, store_only: bool = False,
                 metrics: MetricsAddress | None = None, limits: ServerLimits | None = None,
                 role_options: dict[str, object] | None = None):
        allocator.tune()
        self.state_dir = Path(state_dir)
        options: dict[str, object] = {"netns": netns} if netns else {}
        options["state_dir"] = self.state_dir
        options.update(role_options or {})
        if store_only:
            options["store_only"] = True
        self.limits = limits or ServerLimits()
        self.users = users_of(self.state_dir)
        self.engine = NetconfServer(make_role(role_name, **options), self.state_dir / "datastores",
                                    limits=self.limits, accounts=self.users.identity)
        self.ssh = SshServer(self.engine, self.users, self.state_dir / HOST_KEY_FILE,
                             host=listen.host, port=listen.port,
                             after_connection=allocator.release_free_memory,
                             limits=self.limits)
        self.observability = Observability(self.engine, self.ssh, metrics)  # audit, metrics

    def start(self) -> None:
        if not self.users.names():
            log.warning("no users in %s: add one with "
                        "`nvo3 user add NAME --recovery --state-dir %s`",
                        self.users.path, self.state_dir)
        self.observability.start()   # /healthz answers 503 until the two steps below
        self.engine.start()          # the saved running config reaches the role first
        self.ssh.start()

    def stop(self) -> None:
        self.ssh.stop()
        self.engine.stop()
        self.observability.stop()

    def host_key(self) -> str:
        assert self.ssh.host_key is not None
        return host_key_line(self.ssh.host_key)


def serve_forever(daemon: RoleDaemon) -> None:
    """Start, print a ready line, run until SIGTERM/SIGINT, stop cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    daemon.start()
    print(f"nvo3 ready: {daemon.engine.role.name} on {daemon.ssh.host} port {daemon.ssh.port}"
          f" host-key {daemon.host_key()}{daemon.observability.ready_words()}", flush=True)
    stop.wait()
    daemon.stop()
