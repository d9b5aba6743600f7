"""The portal's forms as nvo3-vcenter operations: what is sent, and what is refused before
anything is sent."""

from __future__ import annotations

import pytest

from nvo3.dashboard.portal import PortalError, portal_request
from nvo3.verbs.vm import derived_mac


def test_create_with_defaults_and_options() -> None:
    op, given = portal_request("create", {"tenant": "alice", "name": "web7", "group": "web",
                                          "ip": "198.19.10.77, 198.19.10.78", "vcpus": "2",
                                          "vserver": "", "power-on": "on"})
    assert op == "create-vm"
    assert given == {"tenant": "alice", "name": "web7", "mac-address": derived_mac("alice", "web7"),
                     "vm-group": "web", "ip-address": ["198.19.10.77", "198.19.10.78"],
                     "resources": {"vcpus": 2}, "power-on": True}
    _, given = portal_request("create", {"tenant": "alice", "name": "x", "mac": "02-AA-00-00-00-01"})
    assert given["mac-address"] == "02:aa:00:00:00:01"


@pytest.mark.parametrize(("action", "form", "message"), [
    ("create", {"tenant": "alice"}, "tenant and a name"),
    ("create", {"tenant": "alice", "name": "a", "ip": "300.1.1.1"}, "not an IP address"),
    ("create", {"tenant": "alice", "name": "a", "mac": "zz"}, "mac:"),
    ("create", {"tenant": "alice", "name": "a", "vcpus": "two"}, "not a whole number"),
    ("modify", {"vm": "alice/vm1"}, "nothing to change"),
    ("relocate", {"vm": "alice/vm1"}, "destination"),
    ("delete", {"vm": ""}, "choose a VM"),
    ("reboot", {}, "unknown action"),
])
def test_unusable_forms_are_refused(action: str, form: dict[str, str], message: str) -> None:
    with pytest.raises(PortalError, match=message):
        portal_request(action, form)


def test_relocate_modify_delete() -> None:
    assert portal_request("relocate", {"vm": "alice/vm1", "destination": "vserver2"}) == (
        "relocate-vm", {"tenant": "alice", "name": "vm1", "destination-vserver": "vserver2"})
    assert portal_request("modify", {"vm": "alice/vm1", "memory": "2048",
                                     "power-state": "powered-off"}) == (
        "modify-vm", {"tenant": "alice", "name": "vm1", "resources": {"memory": 2048},
                      "power-state": "powered-off"})
    assert portal_request("delete", {"vm": "bob/vm2"}) == (
        "terminate-vm", {"tenant": "bob", "name": "vm2", "delete-profile": True})
