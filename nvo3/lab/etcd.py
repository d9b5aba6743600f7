"""An etcd cluster for the lab and the tests: each member its own process and data directory.

Members listen on 127.0.0.1 only, on ports chosen free at start; they are started from
Debian's ``/usr/bin/etcd`` and only ever signalled by their PID. Heartbeat and election
timeouts are shortened (50 ms / 500 ms: a loopback cluster) so that an nDirector lease of
2 s is allowed and a lost member is noticed quickly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD = "/usr/bin/etcd"
HEARTBEAT_MS, ELECTION_MS = 50, 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ClientTls:
    """TLS on the members' client URLs: the CA that signs both sides, the server's certificate
    and key (for 127.0.0.1), and the client certificate every client must show."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def flags(self) -> list[str]:
        return ["--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
                "--trusted-ca-file", str(self.ca), "--client-cert-auth"]

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


@dataclass
class EtcdMember:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None          # set when the member was started by another command (lab)
    tls: ClientTls | None = None

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return _cmdline(self.pid).startswith(ETCD)

    def healthy(self, timeout: float = 1.0) -> bool:
        ctx = self.tls.context() if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=timeout,
                                        context=ctx) as r:
                return bool(json.loads(r.read()).get("health") in ("true", True))
        except (OSError, ValueError):
            return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class EtcdCluster:
    """`size` members under `base_dir` (one data directory each)."""

    base_dir: Path
    size: int = 3
    token: str = "nvo3"
    members: list[EtcdMember] = field(default_factory=list)
    tls: ClientTls | None = None

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        if not self.members:
            self.members = [EtcdMember(f"etcd{i + 1}", self.base_dir / f"etcd{i + 1}",
                                       free_port(), free_port(), tls=self.tls)
                            for i in range(self.size)]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, timeout: float = 20.0, new_session: bool = False) -> None:
        """Start every member and wait until the cluster answers as healthy."""
        for m in self.members:
            self.start_member(m, wait=False, new_session=new_session)
        self.wait_healthy(timeout)

    def start_member(self, m: EtcdMember, wait: bool = True, new_session: bool = False) -> None:
        m.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [ETCD, "--name", m.name, "--data-dir", str(m.data_dir / "data"),
               "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
               "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
               "--initial-cluster", self._initial_cluster(),
               "--initial-cluster-token", self.token, "--initial-cluster-state", "new",
               "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
               "--logger", "zap", "--log-outputs", "stderr",
               *(self.tls.flags() if self.tls else [])]
        with open(m.data_dir / "etcd.log", "ab") as log:
            m.process = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=new_session)
        m.pid = m.process.pid
        if wait:
            self.wait_member(m, 10.0)

    def wait_member(self, m: EtcdMember, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not m.healthy(0.5):
            if not m.running:
                raise RuntimeError(f"etcd member {m.name} exited: {self.log_tail(m)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd member {m.name} not healthy after {timeout} s: "
                                   f"{self.log_tail(m)}")
            time.sleep(0.05)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for m in self.members:
            self.wait_member(m, max(0.5, deadline - time.monotonic()))

    @staticmethod
    def log_tail(m: EtcdMember) -> str:
        try:
            return (m.data_dir / "etcd.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop_member(self, m: EtcdMember, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal one member by its PID and wait for it to end."""
        if m.process is not None:
            if m.process.poll() is None:
                m.process.send_signal(sig)
                try:
                    m.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    m.process.kill()
                    m.process.wait(timeout)
            return
        if m.pid is not None and m.running:
            os.kill(m.pid, sig)
            deadline = time.monotonic() + timeout
            while m.running and time.monotonic() < deadline:
                time.sleep(0.05)
            if m.running:
                os.kill(m.pid, signal.SIGKILL)

    def stop(self) -> None:
        for m in self.members:
            self.stop_member(m)

    # the lab keeps a cluster across commands ------------------------------------------------
    def to_json(self) -> list[dict[str, object]]:
        return [{"name": m.name, "data-dir": str(m.data_dir), "client-port": m.client_port,
                 "peer-port": m.peer_port, "pid": m.pid} for m in self.members]

    @classmethod
    def from_json(cls, base_dir: Path, members: list[dict[str, object]]) -> EtcdCluster:
        ms = [EtcdMember(str(d["name"]), Path(str(d["data-dir"])), int(str(d["client-port"])),
                         int(str(d["peer-port"])), pid=int(str(d["pid"])) if d.get("pid") else None)
              for d in members]
        return cls(Path(base_dir), len(ms), members=ms)
