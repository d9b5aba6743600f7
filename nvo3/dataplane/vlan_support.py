"""Whether this host's kernel can carry a VM's VLAN, checked once when the NVE agent starts.

A VLAN on a VM port needs bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING); 802.1Q
(CONFIG_VLAN_8021Q, module 8021q) is reported beside it. The probe makes a throwaway bridge
with VLAN filtering on in the NVE's namespace and removes it; a kernel without it answers
EOPNOTSUPP. The result names what is missing, so that the agent's state and its refusal of a
VLAN say why instead of a bare "Operation not supported".
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

PROBE_BRIDGE = "nvo3vlanprobe"
BRIDGE_FILTERING = "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"
DOT1Q = "802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q)"


@dataclass(frozen=True)
class VlanSupport:
    """`supported`: VM ports can have VLANs here; `missing`: what the kernel lacks."""

    supported: bool
    missing: tuple[str, ...] = ()

    def reason(self) -> str:
        """Why a VLAN cannot be programmed here ('' when it can)."""
        if self.supported:
            return ""
        return f"this kernel has no {' and no '.join(self.missing)}"

    def state(self) -> dict[str, Any]:
        """The NVE's `kernel` state container."""
        out: dict[str, Any] = {"vlans-supported": self.supported}
        if self.missing:
            out["vlans-missing"] = ", ".join(self.missing)
        return out


def has_8021q() -> bool:
    return Path("/proc/net/vlan").exists() or Path("/sys/module/8021q").exists()


def probe(ipr: Any) -> VlanSupport:
    """Probe through `ipr` (a pyroute2 IPRoute of the NVE's namespace)."""
    missing = []
    try:
        ipr.link("add", ifname=PROBE_BRIDGE, kind="bridge", br_vlan_filtering=1)
    except NetlinkError as exc:
        if exc.code not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        missing.append(BRIDGE_FILTERING)
    finally:
        for index in ipr.link_lookup(ifname=PROBE_BRIDGE):
            ipr.link("del", index=index)
    if not has_8021q():
        missing.append(DOT1Q)
    return VlanSupport(BRIDGE_FILTERING not in missing, tuple(missing))


def unsupported_error(vlan: int, port: str) -> NetlinkError:
    """The error of a VLAN this kernel refused: what is missing, not a bare ENOTSUP."""
    missing = [BRIDGE_FILTERING] + ([] if has_8021q() else [DOT1Q])
    return NetlinkError(errno.EOPNOTSUPP, f"VLAN {vlan} on port {port} needs "
                        f"{' and '.join(missing)}, which this kernel lacks")
