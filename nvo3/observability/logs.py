"""The process's logging: `--log-level`, `--log-file PATH`, `--log-format text|json`.

Text is one line per record, as before. JSON is one object per line (journald, Loki, jq):
``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message`` and the record's
structured fields (an audit record's user, session, peer, operation, target, summary, result;
a mapping change's mac, vni, nve, previous_nve, sequence), plus ``exception`` when there is one.
Without --log-file records go to standard error.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
#: What every LogRecord carries: anything else on a record came from `extra=` (a field).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "INFO", log_file: Path | None = None, fmt: str = "text") -> None:
    """Set the root logger up once for this process (replacing any handler it had)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8") \
        if log_file is not None else logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
