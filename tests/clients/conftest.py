"""Fixtures for the client tests: nvo3 daemons as real processes, reached over real SSH with
their host keys verified from a known_hosts file written from each daemon's ready line.

* ``ndirector`` (session): one ``nvo3 serve ndirector`` daemon; ``nd`` gives it emptied.
* ``vcenter`` (session): one ``nvo3 serve vcenter`` daemon (its RPCs answer
  operation-not-supported until the vCenter role logic lands).

Each daemon has a folder with ``known_hosts`` and an ``ssh_config`` whose UserKnownHostsFile
names it: Ansible's netconf connection and netconf-console2 both hand that file to ncclient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nvo3.launcher import RoleProcess, start_role

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
ND = "urn:nvo3:yang:nvo3-ndirector"


@dataclass
class Server:
    """A running daemon and the files a client needs to verify its host key."""

    proc: RoleProcess
    known_hosts: Path
    ssh_config: Path


def _start(role: str, root: Path) -> Server:
    state = root / "state"
    state.mkdir(parents=True)
    proc = start_role(role, state)
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[{proc.host}]:{proc.port} {proc.host_key}\n")
    ssh_config = root / "ssh_config"
    ssh_config.write_text(f"Host *\n    UserKnownHostsFile {known_hosts}\n")
    return Server(proc, known_hosts, ssh_config)


@pytest.fixture(scope="session")
def ndirector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _start("ndirector", tmp_path_factory.mktemp("clients-ndirector"))
    try:
        yield server
    finally:
        server.proc.stop(timeout=5)              # by its own PID


@pytest.fixture(scope="session")
def vcenter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _start("vcenter", tmp_path_factory.mktemp("clients-vcenter"))
    try:
        yield server
    finally:
        server.proc.stop(timeout=5)


def reset(proc: RoleProcess) -> None:
    """Empty running and candidate; end any pending confirmed commit."""
    with proc.connect() as c:
        with contextlib.suppress(Exception):
            c.dispatch("<cancel-commit/>")
        c.discard_changes()
        if len(c.get_config("running")):
            c.edit_config(f'<config xmlns="{NC}"><ndirector xmlns="{ND}" xmlns:nc="{NC}" '
                          'nc:operation="remove"/></config>', target="running")
        c.discard_changes()


@pytest.fixture
def nd(ndirector: Server) -> Server:
    """The shared nDirector, emptied."""
    assert ndirector.proc.process.poll() is None, "the shared ndirector daemon died"
    reset(ndirector.proc)
    return ndirector
