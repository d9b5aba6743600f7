"""The client behind the recorded Netopeer2 figures, and the NVE remote-MAC list it edits.

The Netopeer2 2.4.5 figures that `nvo3 bench netconf` prints beside its own were measured with
stock ncclient (its own SSH session, not nvo3's :mod:`~nvo3.netconf.client`), the session loop's
polling ``TICK`` lowered from 0.1 to 0.001 s, one session and sequential RPCs. The engine is
measured here with that same client, so both columns carry the same client overhead.

The requests are the ones of that client's runs against nvo3: network 100 of a store-only NVE
agent, its ``remote-macs`` list (a MAC and a remote VTEP per entry) as the subject.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import ncclient.transport.parser as nc_parser
import ncclient.transport.session as nc_session
from lxml import etree
from ncclient import manager

from nvo3.common.names import NVE_NS
from nvo3.launcher import RoleProcess
from nvo3.netconf.proto.xml import BASE_NS

#: ncclient's session-loop polling interval used for the recorded figures (s).
TICK = 0.001

#: The network whose remote MACs are edited.
VNI = 100

_SETUP = (f'<nve xmlns="{NVE_NS}"><local-vtep-address>198.51.100.1</local-vtep-address>'
          f"<networks><network><vni>{VNI}</vni></network></networks></nve>")


def mac(i: int) -> str:
    """A unique unicast MAC for entry `i` (0 <= i < 2**24)."""
    return f"02:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}:01"


def entries(first: int, count: int) -> str:
    """`count` remote-mac entries from index `first` on, as XML."""
    return "".join(f"<remote-mac><mac>{mac(i)}</mac><remote-vtep>198.18.0.2</remote-vtep>"
                   "</remote-mac>" for i in range(first, first + count))


def remote_macs(body: str, operation: str | None = None) -> str:
    """An edit-config <config> holding `body` in network 100's remote-macs container, with
    `operation` (``nc:operation``) on that container if given."""
    op = f' nc:operation="{operation}"' if operation else ""
    return (f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}"><nve xmlns="{NVE_NS}">'
            "<local-vtep-address>198.51.100.1</local-vtep-address><networks><network>"
            f"<vni>{VNI}</vni><remote-macs{op}>{body}</remote-macs></network></networks></nve>"
            "</config>")


def remote_macs_filter() -> tuple[str, str]:
    """A subtree filter selecting network 100's remote-macs container."""
    return ("subtree", f'<nve xmlns="{NVE_NS}"><networks><network><vni>{VNI}</vni>'
                       "<remote-macs/></network></networks></nve>")


def count_remote_macs(reply: Any) -> int:
    """How many remote-mac entries a get-config reply holds."""
    root = etree.fromstring(reply.xml.encode())
    return len(root.findall(f".//{{{NVE_NS}}}remote-mac"))


@contextlib.contextmanager
def polling_tick(tick: float = TICK) -> Iterator[None]:
    """ncclient's module-wide polling interval set to `tick` for the block, then restored
    (nvo3's own client does not poll, so nothing else in the process depends on it)."""
    saved = nc_session.TICK, nc_parser.TICK
    nc_session.TICK = nc_parser.TICK = tick
    try:
        yield
    finally:
        nc_session.TICK, nc_parser.TICK = saved


def open_session(daemon: RoleProcess, timeout: float = 600.0) -> Any:
    """An ncclient manager session to `daemon`, its host key checked against the daemon's
    ready line. Call inside :func:`polling_tick` (the tick is read by the session loop)."""
    session = manager.connect(host=daemon.host, port=daemon.port, username=daemon.username,
                              password=daemon.password, hostkey_verify=True,
                              hostkey_b64=daemon.host_key.split()[-1], allow_agent=False,
                              look_for_keys=False, timeout=timeout)
    session.timeout = timeout
    return session


def set_up(session: Any) -> None:
    """Create network 100 (the parent of the remote-mac list) in running."""
    session.edit_config(target="running", config=f'<config xmlns="{BASE_NS}">{_SETUP}</config>')


def clear(session: Any) -> None:
    """Remove network 100's remote-macs (``remove`` does not fail when they are absent)."""
    session.edit_config(target="running", config=remote_macs("", "remove"))
