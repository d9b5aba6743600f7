"""Small, explicit network-namespace primitives for labs (iproute2 underneath).

Every object a `Netns` lab creates is recorded and removed by `cleanup()` in reverse order,
and every name carries the lab's prefix, so leftovers of a crashed run can be found and
removed by prefix (`remove_leftovers`). Only 198.18.0.0/15 addresses are used by callers.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; a failure names the command and its stderr."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def netns_exec(ns: str, *args: str, check: bool = True,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


def ping(ns: str, address: str, count: int = 1, wait_s: int = 1) -> bool:
    """A bounded ping from inside a namespace."""
    return netns_exec(ns, "ping", "-c", str(count), "-W", str(wait_s), "-q", address,
                      check=False, timeout=count * wait_s + 5).returncode == 0


@dataclass
class Netns:
    """Namespaces and links of one lab; `cleanup()` removes them all."""

    prefix: str
    created: list[str] = field(default_factory=list)

    def namespace(self, tag: str) -> str:
        """Create `<prefix>-<tag>` with loopback up."""
        name = f"{self.prefix}-{tag}"
        run("ip", "netns", "add", name)
        self.created.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str,
             mac_a: str | None = None) -> None:
        """A veth pair between two namespaces, both ends up."""
        run("ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
            "netns", ns_b)
        if mac_a:
            run("ip", "-n", ns_a, "link", "set", name_a, "address", mac_a)
        run("ip", "-n", ns_a, "link", "set", name_a, "up")
        run("ip", "-n", ns_b, "link", "set", name_b, "up")

    def bridge(self, ns: str, name: str) -> None:
        run("ip", "-n", ns, "link", "add", name, "type", "bridge")
        run("ip", "-n", ns, "link", "set", name, "up")

    def enslave(self, ns: str, port: str, bridge: str) -> None:
        run("ip", "-n", ns, "link", "set", port, "master", bridge)

    def address(self, ns: str, dev: str, cidr: str) -> None:
        run("ip", "-n", ns, "addr", "add", cidr, "dev", dev)

    def cleanup(self) -> None:
        """Delete every namespace of this lab (their devices go with them)."""
        for name in reversed(self.created):
            run("ip", "netns", "del", name, check=False)
        self.created.clear()
