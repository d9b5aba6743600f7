"""Printing for the verbs: aligned tables, JSON, error reports and a progress bar.

Results go to stdout (a table, key/value lines, or JSON with ``--json``); errors and progress
go to stderr, so ``nvo3 vm list --json | jq`` stays clean while a bulk operation runs.
The progress bar redraws one line on a terminal; when stderr is not a terminal (CI, pipes)
it prints one plain line per item instead, which logs and tests can read.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from nvo3.netconf.proto.errors import RpcError

Row = dict[str, Any]


def cell(value: Any) -> str:
    """One table cell: lists joined by commas, absent values as '-'."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value)
    return str(value)


def table(rows: Sequence[Row], columns: Sequence[tuple[str, str]],
          out: TextIO | None = None, indent: str = "") -> None:
    """Print `rows` as an aligned table; `columns` are (key, HEADER) pairs."""
    out = out or sys.stdout
    grid = [[header for _, header in columns]]
    grid += [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    for line in grid:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(),
              file=out)


def fields(pairs: Iterable[tuple[str, Any]], out: TextIO | None = None) -> None:
    """Print `key: value` lines, keys aligned; absent values are skipped."""
    pairs = [(k, v) for k, v in pairs if v not in (None, "", [])]
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        print(f"{key + ':':<{width + 1}} {cell(value)}", file=out or sys.stdout)


def emit_json(data: Any, out: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str), file=out or sys.stdout)


def error_dict(exc: RpcError) -> Row:
    """An rpc-error as a JSON object (what `--json` prints on stdout when refused)."""
    err: Row = {"tag": exc.tag, "message": exc.message}
    if exc.app_tag:
        err["app-tag"] = exc.app_tag
    if exc.path:
        err["path"] = exc.path
    return err


def report_refusal(operation: str, exc: RpcError, as_json: bool) -> None:
    """Print a server's refusal: the rpc-error tag, message and error-path."""
    print(f"nvo3: {operation} refused: {exc.tag}: {exc.message}", file=sys.stderr)
    if exc.app_tag:
        print(f"  error-app-tag: {exc.app_tag}", file=sys.stderr)
    if exc.path:
        print(f"  error-path: {exc.path}", file=sys.stderr)
    if as_json:
        emit_json({"error": {"operation": operation, **error_dict(exc)}})


def error(message: str) -> None:
    print(f"nvo3: error: {message}", file=sys.stderr)


def report_error(message: str, as_json: bool) -> None:
    """A failure of the command itself: on stderr, and with --json as {"error": ...} on stdout."""
    error(message)
    if as_json:
        emit_json({"error": {"message": message}})


class Progress:
    """Progress of a bulk operation on stderr: a bar on a terminal, plain lines otherwise.

    >>> with Progress("create", 3) as p:
    ...     p.step("vm-1")          # doctest: +SKIP
    """

    WIDTH = 30

    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 tty: bool | None = None, enabled: bool = True) -> None:
        self.label, self.total, self.done, self.failed = label, total, 0, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.enabled = enabled
        self.t0 = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def step(self, item: str, ok: bool = True, note: str = "") -> None:
        """One item done (`ok` False counts it as failed)."""
        self.done += 1
        self.failed += 0 if ok else 1
        if not self.enabled:
            return
        if self.tty:
            filled = self.WIDTH * self.done // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            failed = f", {self.failed} failed" if self.failed else ""
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}{failed} "
                              f"{item[:30]:<30}")
        else:
            status = "ok" if ok else "FAILED"
            self.stream.write(f"{self.label} {self.done}/{self.total} {item}: {status}"
                              f"{' (' + note + ')' if note else ''}\n")
        self.stream.flush()

    def finish(self) -> None:
        if not self.enabled or self.total == 0:
            return
        took = time.monotonic() - self.t0
        end = "\n" if self.tty else ""
        self.stream.write(f"{end}{self.label}: {self.done - self.failed} of {self.total} done"
                          f"{f', {self.failed} failed' if self.failed else ''} "
                          f"in {took:.1f} s\n")
        self.stream.flush()
        self.enabled = False
