"""A daemon's memory follows what it holds, not how many sessions it has served (issue 12).

A store-only NVE agent is given 10,000 remote MACs in one edit, then 20 sessions are opened and
closed, each with its hello and one get-config of the whole datastore (1.3 MB). Its resident
size is read from /proc when it is ready, after the first session and after the twentieth.

Measured on the development machine with this test's client (ready -> after 1 -> after 20
sessions): 46.9 -> 58.7 -> 59.2 MB with the daemon's allocator settings (`nvo3.allocator`);
46.9 -> 89.2 -> 164.9 MB and 46.9 -> 89.5 -> 139.6 MB without them (glibc's defaults: a
dynamic mmap threshold and an arena per session thread). The bounds, each far from both:
- the 19 sessions after the first add at most 12 MB (measured: under 1 MB; defaults: 50-76 MB);
- after 20 sessions the daemon holds at most 30 MB more than when it was ready (measured:
  12.3 MB, nearly all of it the libyang tree of the 10,000 entries; defaults: 93-118 MB).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nvo3 import allocator
from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.proto.xml import BASE_NS

NVE = "urn:nvo3:yang:nvo3-nve"
ENTRIES = 10_000
SESSIONS = 20
MB = 1024 * 1024
SESSION_GROWTH_MB = 12
HELD_MB = 30

pytestmark = pytest.mark.skipif(not allocator.is_glibc(),
                                reason="the allocator settings are glibc's")


def _load(proc: RoleProcess) -> None:
    entries = "".join(f"<remote-mac><mac>02:00:00:{i >> 16:02x}:{(i >> 8) & 255:02x}:"
                      f"{i & 255:02x}</mac><remote-vtep>198.18.0.2</remote-vtep></remote-mac>"
                      for i in range(ENTRIES))
    with proc.connect() as nc:
        nc.edit_config(f'<config xmlns="{BASE_NS}"><nve xmlns="{NVE}">'
                       "<local-vtep-address>198.51.100.1</local-vtep-address><networks>"
                       f"<network><vni>100</vni><remote-macs>{entries}</remote-macs></network>"
                       "</networks></nve></config>", target="running")


def test_rss_after_20_sessions_is_what_the_datastore_holds(tmp_path: Path) -> None:
    proc = start_role("nve", tmp_path, extra_args=("--store-only",))
    try:
        ready = proc.rss_bytes() / MB
        _load(proc)
        rss = []
        for _ in range(SESSIONS):
            with proc.connect() as nc:
                macs = nc.get_config("running").iter(f"{{{NVE}}}mac")
                assert sum(1 for _ in macs) == ENTRIES
            rss.append(proc.rss_bytes() / MB)
    finally:
        proc.stop()
    print(f"RSS with {ENTRIES} entries: {ready:.1f} MB when ready, {rss[0]:.1f} MB after one "
          f"session, {rss[-1]:.1f} MB after {SESSIONS}")
    assert rss[-1] - rss[0] <= SESSION_GROWTH_MB
    assert rss[-1] - ready <= HELD_MB
