"""The nDirector's audit trail of its mapping table: who lives where, and every move.

One INFO record on the ``nvo3.audit`` logger per change (mac, VNI, from NVE -> to NVE, sequence
number), with the same facts as structured fields (``--log-format json``). A burst (a rebuilt
table, a bulk registration) logs its moves one by one and the rest as one summary record after
the first `DETAILED` changes: an audit line costs microseconds, a 10,000-VM burst must not
pay for 10,000 of them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from nvo3.roles.ndirector.mapping_table import Change

audit = logging.getLogger("nvo3.audit")

#: Changes of one burst logged one by one before the others are summarised (moves: always).
DETAILED = 50


def audit_mappings(changes: Sequence[Change]) -> None:
    """Log the changes of one mapping-table outcome."""
    if not changes or not audit.isEnabledFor(logging.INFO):
        return
    rest: Counter[str] = Counter()
    shown = 0
    for ch in changes:
        if ch.kind == "moved" or shown < DETAILED:
            shown += 1
            _one(ch)
        else:
            rest[ch.kind] += 1
    if rest:
        audit.info("mappings: %d more changes (%s)", sum(rest.values()),
                   ", ".join(f"{k} {n}" for k, n in sorted(rest.items())),
                   extra={"event": "mapping-burst", "changes": dict(rest)})


def _one(ch: Change) -> None:
    m = ch.mapping
    where = f"{ch.previous_nve} -> {m.nve}" if ch.previous_nve else m.nve
    audit.info("mapping %s: mac %s vni %d at %s (vtep %s) sequence %d", ch.kind, m.mac, m.vni,
               where, m.vtep, m.seq,
               extra={"event": f"mapping-{ch.kind}", "mac": m.mac, "vni": m.vni,
                      "nve": m.nve, "previous_nve": ch.previous_nve, "vtep": m.vtep,
                      "sequence": m.seq})
