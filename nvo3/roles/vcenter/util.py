"""Small helpers shared by the vCenter role and its root-vCenter part."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nvo3.netconf.server.role import ApplyError, Tree
from nvo3.roles.peers.links import PeerError
from nvo3.roles.vcenter.placement import NoCapacity
from nvo3.roles.vcenter.profiles import RUNNING_STATES, Profile, ProfileError


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _list(tree: Tree | None, container: str, name: str) -> list[Tree]:
    return list(((tree or {}).get(container) or {}).get(name) or [])


def _true(value: Any) -> bool:
    return value in (True, "true")


def _refuse(exc: ProfileError | NoCapacity | PeerError, path: str | None = None) -> ApplyError:
    if isinstance(exc, ProfileError):
        return ApplyError(str(exc), tag=exc.tag, app_tag=exc.app_tag, path=path)
    if isinstance(exc, NoCapacity):
        return ApplyError(str(exc), tag="resource-denied", app_tag="no-capacity")
    return ApplyError(str(exc), tag="operation-failed", app_tag="peer-failed")


def refuse_if_running(key: tuple[str, str], old: Profile | None) -> None:
    """create-vm of a VM that already runs somewhere: data-exists."""
    if old is not None and old.registered and old.state in RUNNING_STATES:
        raise ApplyError(f"VM {key[0]}/{key[1]} already runs on {old.location.vserver}",
                         tag="data-exists", app_tag="vm-exists")
