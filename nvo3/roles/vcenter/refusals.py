"""How a refusal by a part of the vCenter reaches the client: one ApplyError per kind.

The profile store, placement and the peer sessions each raise their own exception; the
role's RPCs turn every one of them into an ApplyError with a stable error-tag and
error-app-tag before anything changed.
"""

from __future__ import annotations

from nvo3.netconf.server.role_api import ApplyError
from nvo3.roles.peers.sessions import PeerError
from nvo3.roles.vcenter.placement import NoCapacity
from nvo3.roles.vcenter.profiles import ProfileError


def refuse(exc: ProfileError | NoCapacity | PeerError) -> ApplyError:
    """The ApplyError for `exc`: the store's own tags, no-capacity, or peer-failed."""
    if isinstance(exc, ProfileError):
        return ApplyError(str(exc), tag=exc.tag, app_tag=exc.app_tag)
    if isinstance(exc, NoCapacity):
        return ApplyError(str(exc), tag="resource-denied", app_tag="no-capacity")
    return ApplyError(str(exc), tag="operation-failed", app_tag="peer-failed")
