"""Whether a role daemon is ready: its role has applied the running configuration and its
SSH listener accepts connections. `/healthz` answers 200 then, 503 with the reason otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Health:
    """A daemon's readiness, from two facts read when asked."""

    config_applied: Callable[[], bool]
    accepting: Callable[[], bool]

    def check(self) -> tuple[bool, str]:
        """(ready, the reason in one line)."""
        if not self.config_applied():
            return False, "the role has not applied its running configuration yet"
        if not self.accepting():
            return False, "the NETCONF/SSH listener does not accept connections"
        return True, "ok: running configuration applied, NETCONF/SSH listener accepting"
