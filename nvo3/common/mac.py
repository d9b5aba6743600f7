"""MAC addresses in one canonical form: lower case, colon separated (`02:00:c6:12:00:01`)."""

from __future__ import annotations

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
