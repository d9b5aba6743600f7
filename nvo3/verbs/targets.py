"""Which daemon a verb talks to: the running lab's, or one named on the command line.

By default the verbs read the lab state (`nvo3.lab.state`, /run/nvo3/lab.json or
$NVO3_LAB_STATE) and pick the vCenter or nDirector from it. Explicit options override:

* ``--vcenter HOST:PORT`` / ``--ndirector HOST:PORT`` with ``--user``, ``--password-file``
  and ``--host-key`` (an OpenSSH key line, a ``SHA256:`` fingerprint, or a file holding
  one; without it ``~/.ssh/known_hosts`` is checked);
* ``--vcenter NAME`` (no colon) picks that daemon of the lab (e.g. ``vcenter-dc2``).

Every failure here is a :class:`TargetError` (exit code 2) with a sentence saying what to do.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nvo3.lab.state import LabState, state_path
from nvo3.netconf.client.session import Client, ClientError, HostKeyError, connect

PREFERRED = {"vcenter": ("vcenter", "vcenter-root", "root-vcenter"),
             "ndirector": ("ndirector",)}


class TargetError(Exception):
    """No daemon to talk to, or it cannot be reached (exit code 2)."""


@dataclass(frozen=True)
class Target:
    """A daemon and how to log in to it."""

    name: str
    host: str
    port: int
    username: str
    password: str | None
    host_key: str | None

    def __str__(self) -> str:
        return f"{self.name} at {self.host} port {self.port}"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The connection options every verb accepts."""
    g = parser.add_argument_group("where to connect (default: the running lab)")
    g.add_argument("--vcenter", metavar="HOST:PORT|NAME",
                   help="the vCenter to use (default: the lab's)")
    g.add_argument("--ndirector", metavar="HOST:PORT|NAME",
                   help="the nDirector to use (default: the lab's)")
    g.add_argument("--user", metavar="U", help="NETCONF user (with HOST:PORT; default: you)")
    g.add_argument("--password-file", type=Path, metavar="F",
                   help="file whose first line is the password (with HOST:PORT)")
    g.add_argument("--host-key", metavar="K",
                   help="the server's host key: key line, SHA256 fingerprint or a file "
                        "(with HOST:PORT; default: ~/.ssh/known_hosts)")


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _explicit(role: str, text: str, args: argparse.Namespace) -> Target:
    host, port = _host_port(text)
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise TargetError(f"cannot read a password from {args.password_file}: "
                              f"{getattr(exc, 'strerror', None) or 'empty file'}") from None
    key = args.host_key
    if key and Path(key).is_file():
        key = Path(key).read_text().strip()
    return Target(role, host, port, args.user or getpass.getuser(), password, key)


def _from_lab(role: str, name: str | None) -> Target:
    try:
        lab = LabState.load()
    except FileNotFoundError as exc:
        raise TargetError(f"{exc}; or name the {role} with --{role} HOST:PORT") from None
    except (OSError, ValueError, TypeError) as exc:
        raise TargetError(f"cannot read the lab state {state_path()}: {exc}") from None
    if name is not None:
        names = {d.name for d in lab.daemons}
        if name not in names and f"{role}-{name}" in names:
            name = f"{role}-{name}"                 # an NVE by its own name: host1
        try:
            d = lab.daemon(name)
        except KeyError as exc:
            raise TargetError(str(exc.args[0])) from None
    else:
        daemons = lab.of_role(role)
        if not daemons:
            raise TargetError(f"the lab ({state_path()}) has no {role}")
        d = next((d for d in daemons if d.name in PREFERRED.get(role, ())), None) or \
            next((d for d in daemons if d.data_center is None), daemons[0])
    return Target(d.name, d.host, d.port, d.username, d.password, d.host_key)


def resolve(role: str, args: argparse.Namespace) -> Target:
    """The `role` daemon the command line (`--ROLE`, HOST:PORT or a lab daemon's name) or
    the lab names."""
    given: str | None = getattr(args, role, None)
    if given and ":" in given:
        return _explicit(role, given, args)
    return _from_lab(role, given)


@contextmanager
def session(target: Target, timeout: float = 10.0, rpc_timeout: float = 120.0) -> Iterator[Client]:
    """A verified NETCONF session to `target`; connection failures become TargetError."""
    try:
        client = connect(target.host, target.port, target.username, target.password,
                         host_key=target.host_key, timeout=timeout, rpc_timeout=rpc_timeout)
    except HostKeyError as exc:
        raise TargetError(f"host key of {target} not accepted: {exc}") from None
    except (ClientError, OSError) as exc:
        raise TargetError(f"{target.name}: {exc}") from None
    try:
        yield client
    finally:
        client.close()
