"""What an operation answers: the content of an <rpc-reply>, or several <rpc-error>s.

An operation returns a `Reply`: the elements to put inside <rpc-reply> (empty means <ok/>),
where large content that is already serialized travels as `RawXml` and is never re-parsed. An
operation that fails raises `RpcError` (one error) or `RpcErrors` (continue-on-error).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from nvo3.netconf.proto.errors import RpcError


@dataclass(frozen=True)
class RawXml:
    """Reply content already serialized (large <data> is never re-parsed)."""

    xml: bytes


class RpcErrors(Exception):
    """Several <rpc-error>s in one reply (continue-on-error)."""

    def __init__(self, errors: list[RpcError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


#: The content of one <rpc-reply>: elements, or XML already serialized; empty means <ok/>.
Reply = list["etree._Element | RawXml"]
