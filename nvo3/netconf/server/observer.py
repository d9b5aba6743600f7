"""What the engine tells an observer (metrics, audit), and what a role may report beyond its state.

The engine calls an `EngineObserver` at a few points: a session opened or closed, an RPC
answered, the running configuration changed, the role applied a configuration, the saved
configuration applied at start. The base class does nothing, so an engine nobody observes
pays one method call per point. The engine never imports a metrics library: the daemon plugs
an implementation in (`nvo3/observability/`).

A role reports events with a value (a push's latency, a convergence time) through its
`Telemetry`, by short names (``"push_seconds"``); the observer decides what they become. A role
nobody observes keeps the no-op one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lxml import etree

    from nvo3.netconf.server.monitoring import SessionInfo


class EditedPaths(tuple[str, ...]):
    """The data paths an in-place edit created, changed or deleted (created first, then
    changed, then deleted), with how many of each."""

    counts: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def of(cls, created: list[str], changed: list[str], deleted: list[str]) -> EditedPaths:
        paths = cls((*created, *changed, *deleted))
        paths.counts = (len(created), len(changed), len(deleted))
        return paths


class EngineObserver:
    """Does nothing; subclasses override what they watch. Every method is called on the
    thread doing the work, so each must be cheap (a few microseconds)."""

    def session_opened(self, info: SessionInfo) -> None:
        """An authenticated session began."""

    def session_closed(self, info: SessionInfo) -> None:
        """A session ended."""

    def rpc_done(self, info: SessionInfo, op: etree._Element | None, outcome: str,
                 seconds: float) -> None:
        """One <rpc> was answered: `op` the operation element (None when the message held
        none), `outcome` "ok" or the first rpc-error's error-tag, `seconds` from receipt to
        reply sent."""

    def running_changed(self, session_id: int | None, edited: tuple[str, ...] | None) -> None:
        """Running changed (under the engine's lock): on behalf of `session_id` (None: the
        server itself, e.g. a confirmed commit rolled back); `edited` the paths of an
        in-place edit (an `EditedPaths`), None when unknown."""

    def role_applied(self, seconds: float, error_tag: str | None) -> None:
        """The role applied a configuration change (`error_tag` None) or refused it."""

    def config_applied(self) -> None:
        """At start: the role has applied the saved running configuration."""


class Telemetry:
    """What a role reports beyond its state; does nothing unless observed."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """One observation of `name` (seconds for durations)."""

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """`name` happened `amount` times."""


NO_TELEMETRY = Telemetry()
