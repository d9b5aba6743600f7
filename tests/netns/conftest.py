"""Namespace helpers for the netns integration tests (real kernel, cleaned up always).

The lab is nvo3's own `nvo3.lab.netns.Netns` (the product's lab code), under the short names
the tests use. Every namespace is named ``nvo3t-<pid>-<tag>`` and deleted in a ``finally``;
addresses are from 198.18.0.0/15 only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from nvo3.lab.netns import Netns, netns_exec, ping, run


class Lab(Netns):
    """A test's namespaces: `ns(tag)` creates one; `cleanup()` removes them all."""

    ns = Netns.namespace
    sh = staticmethod(run)
    in_ns = staticmethod(netns_exec)
    ping = staticmethod(ping)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab whose namespaces are removed whatever the test does."""
    assert os.geteuid() == 0 and shutil.which("ip"), "the netns tests need root and iproute2"
    lab = Lab(prefix=f"nvo3t-{os.getpid()}")
    try:
        yield lab
    finally:
        lab.cleanup()
