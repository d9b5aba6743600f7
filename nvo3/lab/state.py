"""What a running lab is: its daemons and how to reach them, saved as JSON.

`nvo3 lab up` writes it; `nvo3 lab status|down`, `nvo3 lab demo`, the `nvo3 vm|mapping|nve`
verbs and the tests read it. Default location: /run/nvo3/lab.json (NVO3_LAB_STATE overrides).
The file is mode 0600: it holds the daemons' and the lab users' generated passwords.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nvo3.common.files import write_atomically

DEFAULT_PATH = Path("/run/nvo3/lab.json")


def state_path() -> Path:
    return Path(os.environ.get("NVO3_LAB_STATE", DEFAULT_PATH))


@dataclass
class Daemon:
    """One role daemon of the lab."""

    name: str                 # e.g. "nve-host1", "vserver1", "vcenter-dc1", "ndirector"
    role: str                 # nve | vserver | vcenter | ndirector
    host: str                 # NETCONF address (loopback)
    port: int
    username: str
    password: str
    host_key: str             # "ssh-ed25519 AAAA..." as printed by the daemon
    pid: int
    state_dir: str
    netns: str | None = None  # the host namespace it manages (nve, vserver)
    data_center: str | None = None
    metrics: str | None = None  # HOST:PORT of its /metrics and /healthz (HTTP)


@dataclass
class LabUser:
    """A NETCONF user of the lab's managing daemons (nvo3.lab.users): its NACM groups and,
    for a tenant's administrator, the tenant."""

    name: str
    password: str = field(repr=False)
    groups: list[str] = field(default_factory=list)
    tenant: str | None = None


@dataclass
class LabState:
    """The lab: its name prefix, topology file, namespaces and daemons."""

    prefix: str
    topology: str
    namespaces: list[str] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    work_dir: str = ""
    dashboard_pid: int = 0        # the dashboard `lab up` started (0: none)
    dashboard_url: str = ""
    users: list[LabUser] = field(default_factory=list)
    etcd: list[dict[str, Any]] = field(default_factory=list)   # federated lab: its members

    def daemon(self, name: str) -> Daemon:
        for d in self.daemons:
            if d.name == name:
                return d
        raise KeyError(f"no daemon {name!r} in the lab (have: "
                       f"{', '.join(d.name for d in self.daemons)})")

    def of_role(self, role: str) -> list[Daemon]:
        return [d for d in self.daemons if d.role == role]

    def save(self, path: Path | None = None) -> Path:
        path = path or state_path()
        write_atomically(path, json.dumps(asdict(self), indent=2).encode())
        return path

    @classmethod
    def load(cls, path: Path | None = None) -> LabState:
        path = path or state_path()
        if not path.exists():
            raise FileNotFoundError(f"no lab is up ({path} does not exist): run `nvo3 lab up`")
        raw = json.loads(path.read_text())
        raw["daemons"] = [Daemon(**d) for d in raw.get("daemons", [])]
        raw["users"] = [LabUser(**u) for u in raw.get("users", [])]
        return cls(**raw)
