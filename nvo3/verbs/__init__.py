"""The operator verbs of the `nvo3` command: `vm`, `mapping`, `nve` and `group`.

Each verb is a thin layer: resolve the daemon to talk to (:mod:`.targets`), call one or more
NETCONF operations through :mod:`nvo3.roles.peers.codec` (requests validated against the YANG
modules before they leave), and print the result (:mod:`.output`): a table for people,
``--json`` for scripts.

Exit codes: 0 done; 1 the server refused (its rpc-error is printed: tag, message, path) or
the named object does not exist; 2 usage or connection errors (no lab, unreachable daemon,
host key mismatch, bad input).
"""

from __future__ import annotations

OK, REFUSED, USAGE = 0, 1, 2
