"""The interface between the engine and a role (NVE agent, vServer, vCenter, nDirector).

A role plugs into the engine the way a sysrepo application plugs into Netopeer2, in process:
it names its YANG modules, applies validated configuration changes (or refuses them), answers
its RPCs and provides its config-false state. It only ever sees Python dicts, never NETCONF
XML: configuration as RFC 7951 JSON with module prefixes stripped (lists are lists; 64-bit
integers and decimal64 are strings), RPC input in libyang's `print_dict` shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from nvo3.common.tree import Tree
from nvo3.netconf.server.observer import NO_TELEMETRY, Telemetry

__all__ = ["ApplyError", "ConfigChange", "Notifier", "Role", "RpcHandler", "Tree"]

#: Answers one RPC: its validated input as a dict, its output (None for none).
RpcHandler = Callable[[Tree], "Tree | None"]


class ConfigChange:
    """A validated change of the running configuration: the whole tree before and after.

    Both trees are built only when the role reads them (a large configuration costs time to
    turn into dicts) and then kept; read them during `Role.apply` (a later in-place edit takes
    over the tree they would be built from).  An edit the engine made in place also says what it
    touched (`edited`), and the role may read just those nodes of the result (`after_at`):
    a role that keeps its own copy of the configuration can then work in proportion to the
    edit.
    """

    def __init__(self, before: Callable[[], Tree], after: Callable[[], Tree],
                 edited: Sequence[str] | None = None,
                 after_at: Callable[[str], Tree | None] | None = None):
        self._before, self._after = before, after
        #: The data paths (libyang's, module-prefixed: ``/mod:top/list[key='v']/leaf``) of
        #: every node the edit created (top-most), changed or deleted; None when the engine
        #: does not know them (start, a commit, copy-config, an edit made in a copy): then
        #: only `before` and `after` tell what changed.
        self.edited = None if edited is None else tuple(edited)
        self._after_at = after_at

    def after_at(self, path: str) -> Tree | None:
        """The container or list entry at data `path` in the configuration after the change,
        in `after`'s shape (defaults included) without building `after`, or None when there
        is none.  Only during `Role.apply`."""
        if self._after_at is None:
            raise LookupError("this change cannot be read by path: read `after`")
        return self._after_at(path)

    @cached_property
    def before(self) -> Tree:
        """The running configuration before the change."""
        return self._before()

    @cached_property
    def after(self) -> Tree:
        """The running configuration after the change."""
        return self._after()


class ApplyError(Exception):
    """Raised by a role to refuse a change or an RPC; the client gets this message.

    `tag` is the rpc-error error-tag (operation-failed unless the role knows better), `path`
    an optional data path of the offending node.
    """

    def __init__(self, message: str, tag: str = "operation-failed", path: str | None = None,
                 app_tag: str | None = None):
        super().__init__(message)
        self.tag = tag
        self.path = path
        self.app_tag = app_tag


class Notifier(Protocol):
    """What the engine gives a role to send its own YANG notifications."""

    def notify(self, module: str, name: str, content: Tree) -> None:
        """Send one notification; its content is validated against the module first."""

    def notify_batch(self, module: str, name: str, contents: list[Tree]) -> None:
        """Send many notifications of one kind built from values the role already holds
        validated (keys first, in schema order), without a libyang round trip each."""


@dataclass(frozen=True)
class AccessScope:
    """NACM tenant scope of an RPC or notification (RFC 8341 is enforced by the engine): it
    concerns the data entry at `path` (a template, `{}` standing for the quoted value, e.g.
    ``/nvo3-vcenter:vcenter/tenants/tenant[name={}]``) named by the input leaf `leaf` (a
    "/"-separated path of the input, through lists). The caller must be allowed to write that
    entry (an RPC) or to read it (a notification)."""

    leaf: str
    path: str


class Role:
    """Base class: a role that serves its modules and does nothing else yet.

    Subclasses override what they need. `start` is called once the saved configuration has
    been applied and before sessions are accepted; `stop` when the server shuts down.
    """

    name = "generic"
    modules: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.notifier: Notifier | None = None
        #: Where the role reports latencies and events beyond its state (metrics, when the
        #: daemon exposes them; a no-op otherwise).
        self.telemetry: Telemetry = NO_TELEMETRY

    def start(self, notifier: Notifier) -> None:
        """Keep the engine's notifier; called before sessions are accepted."""
        self.notifier = notifier

    def stop(self) -> None:
        """Release what the role holds; called when the server shuts down."""
        pass

    def apply(self, change: ConfigChange) -> None:
        """Make a validated change real, or raise ApplyError to refuse it (nothing changes)."""

    def state(self) -> Tree:
        """Config-false data, as a dict keyed by `module:top-node` names."""
        return {}

    def rpc_handlers(self) -> dict[str, RpcHandler]:
        """Handlers keyed by `module:rpc-name`; each gets the validated input as a dict."""
        return {}

    def access_scopes(self) -> dict[str, AccessScope]:
        """NACM scopes of its RPCs and notifications, keyed by `module:name` (none by
        default)."""
        return {}
