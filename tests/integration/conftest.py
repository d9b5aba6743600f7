"""End-to-end fixtures: ndirector daemons as real processes, reached over real SSH.

* ``ndirector`` (session scope): one ``nvo3 serve ndirector`` daemon in a temporary state
  directory, shared by the tests that do not restart or crash it.
* ``nd``: that daemon, with running, candidate and startup emptied and no confirmed commit
  pending before the test starts (so tests do not see each other's configuration).
* ``daemons``: a factory for fresh daemons (own state directory, or a given one to restart on
  it); every daemon it started is stopped at the end of the test, by its own PID.

The ``ndirector`` role is used because its configuration is only validated and stored: these
tests are about the NETCONF engine, not about the kernel.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client import Client
from nvo3.netconf.proto.xml import BASE_NS

NC = BASE_NS
ND = "urn:nvo3:yang:nvo3-ndirector"


# daemons --------------------------------------------------------------------------------------
class Daemons:
    """Starts ndirector daemons for one test and stops all of them afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[RoleProcess] = []

    def start(self, state_dir: Path | None = None, password: str | None = None,
              port: int = 0) -> RoleProcess:
        """A new daemon; on `state_dir` (and `password`, `port`) to restart an old one."""
        if state_dir is None:
            state_dir = self.root / f"nd{len(self.started)}"
            state_dir.mkdir()
        proc = start_role("ndirector", state_dir, port=port, password=password)
        self.started.append(proc)
        return proc

    def restart(self, old: RoleProcess, crash: bool = False) -> RoleProcess:
        """Stop (SIGTERM) or kill (SIGKILL) `old`; start again on its state dir and port."""
        if crash:
            old.kill()
        else:
            old.stop()
        # same port, so sessions and notifications name the same server; retry if the
        # kernel has not yet released it
        deadline = time.monotonic() + 5
        while True:
            try:
                return self.start(old.state_dir, old.password, old.port)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop_all(self) -> None:
        for proc in self.started:
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.stop_all()


@pytest.fixture(scope="session")
def ndirector_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleProcess]:
    d = Daemons(tmp_path_factory.mktemp("ndirector"))
    proc = d.start()
    try:
        yield proc
    finally:
        d.stop_all()


def reset(proc: RoleProcess) -> None:
    """Empty running, candidate and startup; end any pending confirmed commit."""
    with proc.connect() as c:
        with contextlib.suppress(Exception):
            c.dispatch("<cancel-commit/>")
        with contextlib.suppress(Exception):
            c.dispatch("<delete-config><target><startup/></target></delete-config>")
        c.discard_changes()
        data = c.get_config("running")
        if len(data):
            c.edit_config(f'<config xmlns="{NC}"><ndirector xmlns="{ND}" xmlns:nc="{NC}" '
                          'nc:operation="remove"/></config>', target="running")
        c.discard_changes()


@pytest.fixture
def nd(ndirector_daemon: RoleProcess) -> RoleProcess:
    """The shared daemon, emptied."""
    assert ndirector_daemon.process.poll() is None, "the shared ndirector daemon died"
    reset(ndirector_daemon)
    return ndirector_daemon


@pytest.fixture
def session(nd: RoleProcess) -> Iterator[Client]:
    """One verified session to the shared, emptied daemon."""
    with nd.connect() as c:
        yield c
