"""MAC addresses in one canonical form: lower case, colon separated (`02:00:c6:12:00:01`)."""

from __future__ import annotations

import hashlib
import re

_CANONICAL = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_ANY = re.compile(r"[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}")


def norm_mac(mac: str) -> str:
    """The canonical form of `mac`; accepts upper case, `-` separators and surrounding blanks.

    Raises ValueError naming the address when it is not a 48-bit MAC address.
    """
    if _CANONICAL.fullmatch(mac):          # fast path: already canonical (bulk pushes)
        return mac
    text = mac.strip().lower()
    if not _ANY.fullmatch(text):
        raise ValueError(f"bad MAC address {mac!r}")
    return text.replace("-", ":")


def derived_mac(tenant: str, name: str, attempt: int = 0) -> str:
    """A stable locally administered unicast MAC for VM tenant/name (02:xx:xx:xx:xx:xx);
    `attempt` > 0 gives the next candidates when the first is taken."""
    seed = f"{tenant}/{name}" if attempt == 0 else f"{tenant}/{name}#{attempt}"
    digest = hashlib.sha256(seed.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))
