"""An acknowledged edit survives kill -9: the running datastore's journal (issue 12).

A store-only NVE agent (its configuration validated and stored, no kernel) takes edit-configs
from four sessions at once: three add remote MACs (plain merges, journaled as the edit), one
adds and deletes entries with operation attributes (made in place, journaled as the edit's
deletions and merge). The
daemon is killed with SIGKILL in the middle; restarted on the same state directory, its running
configuration holds every acknowledged edit, nothing that was never sent, and at most the edits
that were in flight when it died (one per session: written, not yet answered).
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client import ClientError
from nvo3.netconf.proto.xml import BASE_NS

NVE = "urn:nvo3:yang:nvo3-nve"
EDITS_PER_SESSION = 250
SESSIONS = 4


def _mac(session: int, n: int) -> str:
    return f"02:00:00:{session:02x}:{n >> 8:02x}:{n & 255:02x}"


def _config(body: str) -> str:
    return (f'<config xmlns="{BASE_NS}"><nve xmlns="{NVE}" xmlns:nc="{BASE_NS}">'
            f"<local-vtep-address>198.18.0.1</local-vtep-address><networks><network>"
            f"<vni>100</vni><remote-macs>{body}</remote-macs></network></networks></nve></config>")


def _entry(mac: str, operation: str = "") -> str:
    attribute = f' nc:operation="{operation}"' if operation else ""
    inner = "" if operation == "delete" else "<remote-vtep>198.18.0.2</remote-vtep>"
    return f"<remote-mac{attribute}><mac>{mac}</mac>{inner}</remote-mac>"


class Writer(threading.Thread):
    """One session's edits; `present` is what its acknowledged edits leave, `in_flight` the
    edit whose reply never came."""

    def __init__(self, proc: RoleProcess, session: int, with_deletes: bool):
        super().__init__(daemon=True)
        self.proc, self.session, self.with_deletes = proc, session, with_deletes
        self.present: set[str] = set()
        self.in_flight: tuple[str, str] | None = None     # (operation, mac)
        self.acknowledged = 0

    def run(self) -> None:
        try:
            with self.proc.connect() as nc:
                for n in range(EDITS_PER_SESSION):
                    mac = _mac(self.session, n)
                    if self.with_deletes and n % 3 == 2 and self.present:
                        gone = sorted(self.present)[0]
                        self.in_flight = ("delete", gone)
                        nc.edit_config(_config(_entry(gone, "delete")), target="running")
                        self.present.discard(gone)
                    else:
                        self.in_flight = ("merge", mac)
                        nc.edit_config(_config(_entry(mac)), target="running")
                        self.present.add(mac)
                    self.in_flight = None
                    self.acknowledged += 1
        except (ClientError, OSError, EOFError):
            pass                       # the daemon was killed under us


def _remote_macs(proc: RoleProcess) -> set[str]:
    with proc.connect() as nc:
        data = nc.get_config("running")
    return {e.text or "" for e in data.iter(f"{{{NVE}}}mac")}


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_during_edits_from_four_sessions_loses_no_acknowledged_edit(
        tmp_path: Path, round_: int) -> None:
    rng = random.Random(round_)
    proc = start_role("nve", tmp_path, extra_args=("--store-only",))
    writers = [Writer(proc, s, with_deletes=(s == 0)) for s in range(SESSIONS)]
    try:
        for w in writers:
            w.start()
        kill_after = rng.randrange(150, SESSIONS * EDITS_PER_SESSION - 150)
        while sum(w.acknowledged for w in writers) < kill_after and any(w.is_alive() for w in writers):
            threading.Event().wait(0.005)
        proc.kill()
        for w in writers:
            w.join(30)
        acknowledged = sum(w.acknowledged for w in writers)
        assert acknowledged >= kill_after, "the daemon died before the kill"
    finally:
        proc.kill()
    restarted = start_role("nve", tmp_path, password=proc.password, extra_args=("--store-only",))
    try:
        restored = _remote_macs(restarted)
    finally:
        restarted.stop()
    must_have = set().union(*(w.present for w in writers))
    may_add = {w.in_flight[1] for w in writers if w.in_flight and w.in_flight[0] == "merge"}
    may_lose = {w.in_flight[1] for w in writers if w.in_flight and w.in_flight[0] == "delete"}
    assert must_have - may_lose <= restored, f"lost: {sorted(must_have - may_lose - restored)}"
    assert restored <= must_have | may_add, f"invented: {sorted(restored - must_have - may_add)}"
    print(f"round {round_}: killed after {acknowledged} acknowledged edits; "
          f"{len(restored)} remote MACs restored")
