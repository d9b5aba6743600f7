"""Where the dashboard's NETCONF servers are: the root vCenter, the nDirector(s), the hosts.

Read from the running lab's state file (the default) or from a JSON file::

    {"vcenter": {"name": "vcenter-root", "host": "127.0.0.1", "port": 8301,
                 "host_key": "ssh-ed25519 AAAA..."},
     "ndirectors": [{"name": "ndirector", "host": "127.0.0.1", "port": 8300,
                     "host_key": "ssh-ed25519 AAAA..."}],
     "hosts": [{"name": "host1", "data_center": "dc1", "nve": "host1",
                "vserver": "vserver1"}]}

Host keys are required: the dashboard never connects to a server it cannot verify. The hosts
(which NVE and vServer share a machine, in which data center) draw the topology; VMs' own
locations add to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvo3.lab.state import LabState

ROOT_NAMES = ("vcenter-root", "vcenter", "root-vcenter")


class TargetsError(Exception):
    """The lab state or the configuration file does not say where the servers are."""


@dataclass(frozen=True)
class Endpoint:
    """One NETCONF server and the host key it must present."""

    name: str
    host: str
    port: int
    host_key: str


@dataclass(frozen=True)
class HostPlace:
    """One machine: its data center, its NVE and its vServer."""

    name: str
    data_center: str
    nve: str
    vserver: str


@dataclass(frozen=True)
class Targets:
    """The servers the dashboard talks to, and the hosts it draws."""

    vcenter: Endpoint
    ndirectors: tuple[Endpoint, ...]
    hosts: tuple[HostPlace, ...] = field(default=())


def from_lab(path: Path | None = None) -> Targets:
    """The root vCenter, the nDirector(s) and the hosts of the lab at `path`."""
    try:
        lab = LabState.load(path)
    except FileNotFoundError as exc:
        raise TargetsError(str(exc)) from None
    except (OSError, ValueError, TypeError) as exc:
        raise TargetsError(f"cannot read the lab state: {exc}") from None
    vcenters = lab.of_role("vcenter")
    root = next((d for d in vcenters if d.name in ROOT_NAMES), None) or \
        next((d for d in vcenters if d.data_center is None), None)
    if root is None:
        raise TargetsError("the lab has no root vCenter")
    nds = lab.of_role("ndirector")
    if not nds:
        raise TargetsError("the lab has no nDirector")
    hosts = []
    for vs in lab.of_role("vserver"):
        nve = next((d for d in lab.of_role("nve") if d.netns == vs.netns), None)
        if nve is not None and vs.netns:
            host = nve.name.removeprefix("nve-")
            hosts.append(HostPlace(host, vs.data_center or "-", host, vs.name))
    return Targets(Endpoint(root.name, root.host, root.port, root.host_key),
                   tuple(Endpoint(d.name, d.host, d.port, d.host_key) for d in nds),
                   tuple(sorted(hosts, key=lambda h: (h.data_center, h.name))))


def _endpoint(raw: Any, what: str) -> Endpoint:
    if not isinstance(raw, dict):
        raise TargetsError(f"{what}: expected an object with name, host, port, host_key")
    try:
        ep = Endpoint(str(raw.get("name", what)), str(raw["host"]), int(raw["port"]),
                      str(raw["host_key"]))
    except (KeyError, ValueError) as exc:
        raise TargetsError(f"{what}: missing or bad {exc}") from None
    if not ep.host_key.strip():
        raise TargetsError(f"{what}: empty host_key (host keys are always verified)")
    return ep


def from_file(path: Path) -> Targets:
    """The servers and hosts named by a JSON configuration file."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetsError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or "vcenter" not in raw:
        raise TargetsError(f"{path}: expected an object with vcenter and ndirectors")
    nds = raw.get("ndirectors") or []
    if not isinstance(nds, list) or not nds:
        raise TargetsError(f"{path}: ndirectors must name at least one nDirector")
    try:
        hosts = tuple(HostPlace(str(h["name"]), str(h.get("data_center", "-")),
                                str(h.get("nve", h["name"])), str(h["vserver"]))
                      for h in raw.get("hosts") or [])
    except (KeyError, TypeError, AttributeError) as exc:
        raise TargetsError(f"{path}: a host lacks {exc}") from None
    return Targets(_endpoint(raw["vcenter"], "vcenter"),
                   tuple(_endpoint(n, f"ndirectors[{i}]") for i, n in enumerate(nds)), hosts)
