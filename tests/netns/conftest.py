"""Namespace helpers for the netns integration tests (real kernel, cleaned up always).

Every namespace is named ``nvo3t-<pid>-<tag>`` and deleted in a ``finally``;
addresses are from 198.18.0.0/15 only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output."""
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace ``ns``."""
    return sh("ip", "netns", "exec", ns, *args, check=check)


def ping(ns: str, dst: str, count: int = 1, wait: int = 1) -> bool:
    """One bounded ping from ``ns``."""
    return in_ns(ns, "ping", "-c", str(count), "-W", str(wait), "-q", dst, check=False).returncode == 0


@dataclass
class Lab:
    """Namespaces created by one test; :meth:`cleanup` removes all of them."""

    prefix: str
    created: list[str] = field(default_factory=list)

    def ns(self, tag: str) -> str:
        """Create a namespace with loopback up."""
        name = f"{self.prefix}-{tag}"
        sh("ip", "netns", "add", name)
        self.created.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str, mac_a: str | None = None) -> None:
        """A veth pair between two namespaces, both ends up."""
        sh("ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
           "netns", ns_b)
        if mac_a:
            sh("ip", "-n", ns_a, "link", "set", name_a, "address", mac_a)
        sh("ip", "-n", ns_a, "link", "set", name_a, "up")
        sh("ip", "-n", ns_b, "link", "set", name_b, "up")

    sh = staticmethod(sh)
    in_ns = staticmethod(in_ns)
    ping = staticmethod(ping)

    def cleanup(self) -> None:
        """Delete every namespace this lab created (devices inside go with them)."""
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        self.created.clear()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab whose namespaces are removed whatever the test does."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    lab = Lab(prefix=f"nvo3t-{os.getpid()}")
    try:
        yield lab
    finally:
        lab.cleanup()
