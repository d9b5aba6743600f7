"""What every verb shares: calling the daemon, turning failures into exit codes.

The verbs themselves are put together in :mod:`nvo3.verbs.registry`; this module imports none
of them."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import libyang

from nvo3.common.tree import Tree
from nvo3.netconf.client.session import Client, ClientError, RemoteRpcError
from nvo3.roles.peers import codec
from nvo3.verbs import REFUSED, USAGE
from nvo3.verbs.output import error, report_error, report_refusal
from nvo3.verbs.targets import Target, TargetError, resolve, session


class Refused(Exception):
    """The server answered an operation with <rpc-error> (exit code 1)."""

    def __init__(self, operation: str, error: RemoteRpcError) -> None:
        super().__init__(f"{operation}: {error}")
        self.operation, self.error = operation, error


class NotFound(Exception):
    """The named object does not exist (exit code 1)."""


class BadInput(Exception):
    """The command line asks for something impossible (exit code 2)."""


def plain(value: Any) -> Any:
    """`value` with libyang's keyed lists turned into plain lists (indexable, JSON-able)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "KeyedList":
        return [plain(v) for v in value]
    return value


def rpc(client: Client, module: str, name: str, given: Tree) -> Tree:
    """`module:name` with `given` input; its output, or Refused."""
    try:
        return plain(codec.call(client, module, name, given))
    except RemoteRpcError as exc:
        raise Refused(name, exc) from None
    except libyang.LibyangError as exc:
        raise BadInput(f"{name}: invalid input: {exc}") from None


def state(client: Client, module: str, top: str) -> Tree:
    """Configuration and state under /module:top; Refused on an rpc-error."""
    try:
        return codec.get_state(client, module, top)
    except RemoteRpcError as exc:
        raise Refused("get", exc) from None


Verb = Callable[[argparse.Namespace, Client], int]


def run(role: str, verb: Verb, args: argparse.Namespace) -> int:
    """Connect to the `role` daemon, run `verb`; map every failure onto an exit code."""
    as_json = bool(getattr(args, "json", False))
    if getattr(args, "log_level", "INFO") == "INFO":     # the default: keep stderr for
        logging.getLogger().setLevel(logging.WARNING)     # errors and progress
        logging.getLogger("ncclient").setLevel(logging.CRITICAL)  # "socket reset" on close
    try:
        target: Target = resolve(role, args)
        with session(target) as client:
            return verb(args, client)
    except Refused as exc:
        report_refusal(exc.operation, exc.error, as_json)
        return REFUSED
    except NotFound as exc:
        report_error(str(exc), as_json)
        return REFUSED
    except (TargetError, BadInput) as exc:
        report_error(str(exc), as_json)
        return USAGE
    except ClientError as exc:
        error(f"the session failed: {exc}")
        return USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return 130
