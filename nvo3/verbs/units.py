"""Figures with their units, for the operator: the YANG models count time in microseconds
(`units "microseconds"`); the verbs show milliseconds and always say so."""

from __future__ import annotations

from typing import Any


def ms(microseconds: Any) -> float | None:
    """`microseconds` (a number or libyang's text of a uint64) in milliseconds, 3 decimals;
    None when absent."""
    if microseconds is None or microseconds == "":
        return None
    return round(int(microseconds) / 1000, 3)


def ms_text(microseconds: Any) -> str | None:
    """`microseconds` as text in milliseconds with the unit ("12.345 ms"), None when absent."""
    value = ms(microseconds)
    return None if value is None else f"{value:.3f} ms"


def number(value: Any) -> int | None:
    """A counter or gauge as a number (libyang prints 64-bit integers as text)."""
    return None if value is None or value == "" else int(value)
