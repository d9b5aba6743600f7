"""NETCONF errors: one exception that maps one-to-one onto an <rpc-error> (RFC 6241 App. A)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, base


class NetconfError(Exception):
    """Root of every error the engine raises."""


@dataclass
class RpcError(NetconfError):
    """An <rpc-error>: error-type, error-tag, severity, app-tag, path, message, info.

    `info` holds error-info children as (name, text) pairs in the base namespace, for example
    ("session-id", "4") with lock-denied or ("bad-element", "vni").
    """

    tag: str
    message: str
    type: str = "application"
    path: str | None = None
    app_tag: str | None = None
    info: list[tuple[str, str]] = field(default_factory=list)
    severity: str = "error"
    path_namespaces: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.tag}: {self.message}{where}"

    def to_xml(self) -> etree._Element:
        """The <rpc-error> element, in the base namespace."""
        err = etree.Element(base("rpc-error"), nsmap={None: BASE_NS})
        etree.SubElement(err, base("error-type")).text = self.type
        etree.SubElement(err, base("error-tag")).text = self.tag
        etree.SubElement(err, base("error-severity")).text = self.severity
        if self.app_tag:
            etree.SubElement(err, base("error-app-tag")).text = self.app_tag
        if self.path:
            nsmap = {p: ns for p, ns in self.path_namespaces.items() if p}
            path = etree.SubElement(err, base("error-path"), nsmap=nsmap or None)
            path.text = self.path
        msg = etree.SubElement(err, base("error-message"))
        msg.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        msg.text = self.message
        if self.info:
            info = etree.SubElement(err, base("error-info"))
            for name, text in self.info:
                etree.SubElement(info, base(name)).text = text
        return err


def operation_not_supported(what: str) -> RpcError:
    """`what` (a capability or feature) is not supported by this server."""
    return RpcError("operation-not-supported", f"{what} is not supported", type="protocol")


def missing_element(name: str, where: str) -> RpcError:
    """Element <name> is required in <where>."""
    return RpcError("missing-element", f"<{name}> is missing in <{where}>", type="protocol",
                    info=[("bad-element", name)])


def bad_element(name: str, message: str, tag: str = "bad-element") -> RpcError:
    """Element <name> is wrong (`tag` bad-element, or invalid-value for a bad value)."""
    return RpcError(tag, message, type="protocol", info=[("bad-element", name)])


def invalid_value(message: str, path: str | None = None) -> RpcError:
    """A protocol-level invalid-value, at data `path` when there is one."""
    return RpcError("invalid-value", message, type="protocol", path=path)
