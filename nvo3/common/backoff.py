"""Exponential backoff between reconnection attempts, one policy for every peer session."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays that double after each failure, from `first` up to `cap`; `reset()` after a success."""

    first: float = 0.1
    cap: float = 5.0
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.first

    def next_delay(self) -> float:
        """The delay to wait now; the one after it is twice as long (at most `cap`)."""
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        """Start again from `first` (the peer answered)."""
        self._next = self.first
