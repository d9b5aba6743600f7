"""What every test shares: no traffic leaves the machine.

Integration and client tests configure NVEs whose management addresses (198.18.1.n) no
namespace holds; a real nDirector then tries to reach them. Without a route of their own those
attempts would leave through the default route. For the session, 198.18.0.0/15 (every address
the tests use) gets a `prohibit` route in the root namespace: a connection there fails at once,
locally. More specific routes (a test's own veth or bridge addresses) still win, and network
namespaces have their own tables.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

TEST_RANGE = "198.18.0.0/15"


@pytest.fixture(scope="session", autouse=True)
def no_traffic_leaves_the_machine() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    added = subprocess.run(["ip", "route", "add", "prohibit", TEST_RANGE],
                           capture_output=True).returncode == 0
    try:
        yield
    finally:
        if added:
            subprocess.run(["ip", "route", "del", "prohibit", TEST_RANGE], capture_output=True)
