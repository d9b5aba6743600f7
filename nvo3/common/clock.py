"""Timestamps as YANG `yang:date-and-time` text (UTC, `Z`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(epoch: float | None = None) -> str:
    """`epoch` (now when None) as `2026-12-05T05:06:07.123456Z`."""
    when = time.time() if epoch is None else epoch
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
