"""docs/architecture.md maps the package: every module is in it, and everything it names exists."""

from __future__ import annotations

import re
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
PACKAGE = TOP / "nvo3"
DOC = TOP / "docs" / "architecture.md"


def _named_in_doc() -> set[str]:
    """Module paths in backticks, relative to nvo3/ (`netconf/proto/framing.py`)."""
    text = DOC.read_text()
    return {m.removeprefix("nvo3/") for m in re.findall(r"`([\w/]+\.py)`", text)}


def test_every_module_is_described() -> None:
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py"}
    missing = sorted(modules - _named_in_doc())
    assert not missing, f"modules docs/architecture.md does not describe: {missing}"


def test_every_module_the_doc_names_exists() -> None:
    stale = sorted(m for m in _named_in_doc()
                   if not (PACKAGE / m).is_file() and not (TOP / m).is_file())
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"
