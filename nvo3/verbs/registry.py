"""The verbs of the `nvo3` command, in one list: `vm`, `mapping`, `nve`, `group`, `show` and
`events`."""

from __future__ import annotations

import argparse
from typing import Any

from nvo3.verbs import events, group, mapping, nve_status, overview, vm
from nvo3.verbs.targets import add_options

VERBS = (vm, mapping, nve_status, group, overview, events)


def parent() -> argparse.ArgumentParser:
    """The options every verb takes: --json and where to connect."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    add_options(p)
    return p


def add_parsers(sub: Any) -> None:
    """Add the `vm`, `mapping`, `nve`, `group`, `show` and `events` commands to the `nvo3`
    parser."""
    common = parent()
    for module in VERBS:
        module.add_parser(sub, common)
