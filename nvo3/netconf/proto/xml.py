"""XML names the engine uses: NETCONF namespaces and small lxml helpers."""

from __future__ import annotations

from lxml import etree

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
#: replayComplete and notificationComplete (RFC 5277 section 3.6)
NETMOD_NOTIF_NS = "urn:ietf:params:xml:ns:netmod:notification"
WITH_DEFAULTS_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults"
WD_ATTR_NS = "urn:ietf:params:xml:ns:netconf:default:1.0"
MONITORING_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
NC_NOTIFICATIONS_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
YANG_NS = "urn:ietf:params:xml:ns:yang:1"

PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True,
                         huge_tree=True)


def qname(ns: str, name: str) -> str:
    """Clark notation `{ns}name`."""
    return f"{{{ns}}}{name}"


def base(name: str) -> str:
    """A name in the NETCONF base namespace."""
    return qname(BASE_NS, name)


def local_name(element: etree._Element) -> str:
    """The element's name without its namespace."""
    return etree.QName(element).localname


def namespace(element: etree._Element) -> str | None:
    """The element's namespace URI, or None when unqualified."""
    return etree.QName(element).namespace


def find_child(parent: etree._Element, name: str) -> etree._Element | None:
    """First child named `name` in the base namespace or unqualified (clients send both)."""
    for child in parent:
        if isinstance(child.tag, str) and local_name(child) == name \
                and namespace(child) in (BASE_NS, None):
            return child
    return None


def parse(data: bytes | str) -> etree._Element:
    """Parse a document with the engine's safe parser (no entities, no network)."""
    if isinstance(data, str):
        data = data.encode()
    return etree.fromstring(data, PARSER)
