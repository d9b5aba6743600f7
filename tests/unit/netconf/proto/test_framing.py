"""NETCONF framing and hello helpers (RFC 6242, RFC 6241 8.1), in memory, no sockets."""

from __future__ import annotations

import pytest

from nvo3.netconf.proto.framing import (
    Base,
    FrameDecoder,
    FramingError,
    HelloError,
    build_hello,
    encode,
    negotiate,
    parse_client_hello,
    parse_server_hello,
)
from nvo3.netconf.proto.xml import BASE_NS

B10 = "urn:ietf:params:netconf:base:1.0"
B11 = "urn:ietf:params:netconf:base:1.1"


def bytewise(decoder: FrameDecoder, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(data)):
        out += decoder.feed(data[i:i + 1])
    return out


@pytest.mark.parametrize("version", [Base.V10, Base.V11])
def test_roundtrip_bytewise(version: Base) -> None:
    msgs = [b"<rpc message-id='1'/>", b"<rpc message-id='2'>\xc3\xa9t\xc3\xa9</rpc>"]
    wire = b"".join(encode(m, version) for m in msgs)
    assert bytewise(FrameDecoder(version), wire) == msgs
    assert FrameDecoder(version).feed(wire) == msgs


def test_rfc6242_example_multiple_chunks() -> None:
    wire = (b"\n#4\n<rpc\n#18\n message-id=\"102\"\n\n#79\n     xmlns=\"urn:ietf:params:xml:ns:"
            b"netconf:base:1.0\">\n  <close-session/>\n</rpc>\n##\n")
    [msg] = bytewise(FrameDecoder(Base.V11), wire)
    assert msg.startswith(b"<rpc message-id=\"102\"\n") and msg.endswith(b"</rpc>")


def test_chunk_split_across_feeds_and_two_messages_in_one_feed() -> None:
    d = FrameDecoder(Base.V11)
    assert d.feed(b"\n#5\nab") == []
    assert d.feed(b"c") == []
    assert d.feed(b"de\n#") == []
    assert d.feed(b"1\nf\n##\n\n#1\nx\n##\n\n#2") == [b"abcdef", b"x"]
    assert d.buffered == 3


def test_eom_split_marker_and_whitespace() -> None:
    d = FrameDecoder(Base.V10)
    assert d.feed(b"<a/>]]>") == []
    assert d.feed(b"]]") == []
    assert d.feed(b">\n<b/>]]>]]>\n \n]]>]]>") == [b"<a/>", b"<b/>"]


@pytest.mark.parametrize("wire, problem", [
    (b"#4\nabcd\n##\n", "expected LF"),
    (b"\n4\nabcd\n##\n", "expected '#'"),
    (b"\n#0\n", "malformed chunk-size"),
    (b"\n#04\nabcd", "malformed chunk-size"),
    (b"\n#x\n", "malformed chunk-size"),
    (b"\n#12345678901\n", "malformed chunk-size"),
    (b"\n#4294967296\n", "exceeds"),
    (b"\n##\n", "before any chunk"),
    (b"\n#1\na\n##x", "closing end-of-chunks"),
    (b"\n#2\nabc\n##\n", "expected LF"),
])
def test_bad_chunk_headers(wire: bytes, problem: str) -> None:
    with pytest.raises(FramingError, match=problem):
        bytewise(FrameDecoder(Base.V11), wire)


def test_max_message_size() -> None:
    with pytest.raises(FramingError, match="maximum"):
        FrameDecoder(Base.V11, max_message_size=10).feed(b"\n#6\nabcdef\n#6\nghijkl\n##\n")
    with pytest.raises(FramingError, match="exceeds"):
        FrameDecoder(Base.V10, max_message_size=10).feed(b"x" * 100)


def test_switch_to_chunked_after_hello_keeps_buffered_bytes() -> None:
    d = FrameDecoder(Base.V10)
    d.receive_data(encode(b"<hello/>", Base.V10) + encode(b"<rpc/>", Base.V11))
    assert d.next_message() == b"<hello/>"
    d.version = Base.V11
    assert d.next_message() == b"<rpc/>"
    assert d.next_message() is None


def test_encode_rules() -> None:
    assert encode(b"<a/>", Base.V11) == b"\n#4\n<a/>\n##\n"
    assert encode(b"<a/>", Base.V10) == b"<a/>]]>]]>"
    with pytest.raises(FramingError):
        encode(b"", Base.V11)
    with pytest.raises(FramingError):
        encode(b"<a>]]>]]></a>", Base.V10)


def test_hello_build_and_parse() -> None:
    hello = build_hello([B10, B11, "urn:x"], 7)
    assert parse_server_hello(hello) == ({B10, B11, "urn:x"}, 7)
    assert parse_client_hello(build_hello([B10])) == {B10}
    with pytest.raises(HelloError, match="session-id"):
        parse_client_hello(hello)
    with pytest.raises(HelloError, match="neither"):
        parse_client_hello(build_hello(["urn:x"]))
    with pytest.raises(HelloError, match="well-formed"):
        parse_client_hello(b"<hello")
    with pytest.raises(HelloError, match="expected <hello>"):
        parse_client_hello(f"<rpc xmlns='{BASE_NS}'/>".encode())


def test_negotiate() -> None:
    assert negotiate([B10, B11], [B11]) is Base.V11
    assert negotiate([B10, B11], [B10]) is Base.V10
    assert negotiate([B10], [B10, B11]) is Base.V10
