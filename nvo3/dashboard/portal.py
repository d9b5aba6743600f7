"""The tenant portal's forms turned into nvo3-vcenter operations (pure).

Only the shape of the input is checked here (a VM chosen, numbers that are numbers); the
vCenter validates the rest and its rpc-error is what the person sees.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from nvo3.common.mac import norm_mac
from nvo3.verbs.vm import derived_mac

OPERATIONS = {"create": "create-vm", "modify": "modify-vm", "relocate": "relocate-vm",
              "replicate": "replicate-vm", "delete": "terminate-vm"}


class PortalError(ValueError):
    """A form is incomplete or malformed (nothing was sent to the vCenter)."""


def _vm(form: Mapping[str, str]) -> tuple[str, str]:
    tenant, _, name = (form.get("vm") or "").partition("/")
    if not tenant or not name:
        raise PortalError("choose a VM")
    return tenant, name


def _number(form: Mapping[str, str], key: str) -> int | None:
    text = (form.get(key) or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise PortalError(f"{key}: {text!r} is not a whole number")
    return int(text)


def _ips(form: Mapping[str, str]) -> list[str]:
    out = []
    for text in (form.get("ip") or "").replace(",", " ").split():
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            raise PortalError(f"ip: {text!r} is not an IP address") from None
    return out


def _resources(form: Mapping[str, str]) -> dict[str, int]:
    return {k: v for k in ("vcpus", "memory") if (v := _number(form, k)) is not None}


def _create(form: Mapping[str, str]) -> dict[str, Any]:
    tenant, name = (form.get("tenant") or "").strip(), (form.get("name") or "").strip()
    if not tenant or not name:
        raise PortalError("a new VM needs a tenant and a name")
    mac = (form.get("mac") or "").strip()
    try:
        given: dict[str, Any] = {"tenant": tenant, "name": name,
                                 "mac-address": norm_mac(mac) if mac
                                 else derived_mac(tenant, name)}
    except ValueError as exc:
        raise PortalError(f"mac: {exc}") from None
    for key, leaf in (("group", "vm-group"), ("vserver", "vserver")):
        if (form.get(key) or "").strip():
            given[leaf] = form[key].strip()
    if ips := _ips(form):
        given["ip-address"] = ips
    if res := _resources(form):
        given["resources"] = res
    given["power-on"] = form.get("power-on", "on") == "on"
    return given


def _modify(form: Mapping[str, str]) -> dict[str, Any]:
    tenant, name = _vm(form)
    given: dict[str, Any] = {"tenant": tenant, "name": name}
    if res := _resources(form):
        given["resources"] = res
    if ips := _ips(form):
        given["ip-address"] = ips
    if (form.get("power-state") or "") in ("powered-on", "powered-off"):
        given["power-state"] = form["power-state"]
    if len(given) == 2:
        raise PortalError("nothing to change: give resources, addresses or a power state")
    return given


def portal_request(action: str, form: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """(operation, input) for one submitted portal form; PortalError when it is unusable."""
    if action not in OPERATIONS:
        raise PortalError(f"unknown action {action!r}")
    if action == "create":
        return OPERATIONS[action], _create(form)
    if action == "modify":
        return OPERATIONS[action], _modify(form)
    tenant, name = _vm(form)
    given: dict[str, Any] = {"tenant": tenant, "name": name}
    if action in ("relocate", "replicate"):
        dest = (form.get("destination") or "").strip()
        if not dest:
            raise PortalError("choose a destination vServer")
        given["destination-vserver"] = dest
        if action == "replicate" and (form.get("replica") or "").strip():
            replica = form["replica"].strip()
            given["replica-name"] = replica
            given["replica-mac-address"] = derived_mac(tenant, replica)
    if action == "delete":
        given["delete-profile"] = True
    return OPERATIONS[action], given
