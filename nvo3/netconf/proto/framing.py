"""NETCONF message framing and the hello exchange, sans I/O (RFC 6242, RFC 6241 section 8.1).

Shaped like h11: a :class:`FrameDecoder` is fed bytes as they arrive and hands back complete
messages; :func:`encode` turns a message into the bytes to write. Nothing here touches a socket,
so the whole protocol core is tested in memory, byte by byte.

Why not the `netconf` package's ``NetconfFramingTransport`` (netconf/base.py): it reads from a
blocking stream itself (not sans-I/O), returns ``str`` (it decodes every message), busy-loops on a
closed stream in its base:1.0 reader (``recv`` returning ``b""`` is never checked), has no maximum
message size, and its ``chunkit`` pads short writes with ``"\\n"`` after the end-of-chunks marker,
which a strict base:1.1 peer rejects. What we do reuse from the package: its protocol constants
(``NC_BASE_10``/``NC_BASE_11``) and its exception hierarchy (:class:`FramingError` and
:class:`HelloError` derive from ``netconf.error.FramingError``/``SessionError``), so code written
against the package catches our errors too.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

import netconf.error
from lxml import etree
from netconf.base import NC_BASE_10, NC_BASE_11

from nvo3.netconf.proto.xml import BASE_NS

EOM = b"]]>]]>"
END_OF_CHUNKS = b"\n##\n"
MAX_CHUNK_SIZE = 4294967295            # RFC 6242 section 4.2
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_WHITESPACE = b" \t\r\n"


class FramingError(netconf.error.FramingError):
    """The peer broke RFC 6242 framing (remote error); the session must be closed."""


class HelloError(netconf.error.SessionError):
    """The peer's <hello> is missing, malformed or not acceptable (RFC 6241 section 8.1)."""


class Base(enum.Enum):
    """The negotiated NETCONF base version, which decides the framing."""

    V10 = NC_BASE_10   # end-of-message marker ]]>]]>
    V11 = NC_BASE_11   # chunked framing


def negotiate(ours: Iterable[str], theirs: Iterable[str]) -> Base:
    """base:1.1 (chunked) when both sides advertise it, else base:1.0 (RFC 6242 section 4.1)."""
    if NC_BASE_11 in set(ours) and NC_BASE_11 in set(theirs):
        return Base.V11
    return Base.V10


class FrameDecoder:
    """Incremental decoder: bytes in, complete messages out.

    Starts in base:1.0 framing (the hello is always EOM-framed); switch with :attr:`version`
    after the hello. Use :meth:`receive_data` + :meth:`next_message` to stop right after the
    hello (bytes behind it stay buffered and are decoded with the new framing), or :meth:`feed`
    to drain everything at once.
    """

    def __init__(self, version: Base = Base.V10,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.version = version
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._scanned = 0                  # base:1.0: bytes already searched for EOM
        self._chunks: list[bytes] = []     # base:1.1: chunks of the message being decoded
        self._size = 0                     # base:1.1: bytes in self._chunks
        self._need: int | None = None      # base:1.1: data bytes still due for the current chunk

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a message."""
        return len(self._buf) + self._size

    def receive_data(self, data: bytes) -> None:
        """Append received bytes; no parsing happens until :meth:`next_message`."""
        self._buf += data

    def next_message(self) -> bytes | None:
        """The next complete message, or None when more bytes are needed.

        Raises FramingError on malformed framing or an oversized message.
        """
        while True:
            if self.version is Base.V10:
                msg = self._next_eom()
            else:
                msg = self._next_chunked()
            if msg is None or msg:          # skip whitespace-only base:1.0 "messages"
                return msg

    def feed(self, data: bytes) -> list[bytes]:
        """Append `data` and return every message it completes, in order."""
        self.receive_data(data)
        out: list[bytes] = []
        while (msg := self.next_message()) is not None:
            out.append(msg)
        return out

    # base:1.0 -----------------------------------------------------------------------------
    def _next_eom(self) -> bytes | None:
        idx = self._buf.find(EOM, max(0, self._scanned - len(EOM) + 1))
        if idx < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self.max_message_size + len(EOM):
                raise FramingError(f"base:1.0 message exceeds {self.max_message_size} bytes "
                                   "without an end-of-message marker")
            return None
        if idx > self.max_message_size:
            raise FramingError(f"base:1.0 message of {idx} bytes exceeds the maximum "
                               f"{self.max_message_size}")
        msg = bytes(self._buf[:idx]).strip(_WHITESPACE)
        del self._buf[:idx + len(EOM)]
        self._scanned = 0
        return msg

    # base:1.1 -----------------------------------------------------------------------------
    def _next_chunked(self) -> bytes | None:
        while True:
            if self._need is not None:
                if len(self._buf) < self._need:
                    return None
                self._chunks.append(bytes(self._buf[:self._need]))
                del self._buf[:self._need]
                self._need = None
            header = self._parse_header()
            if header is None:
                return None
            if header == 0:                 # end-of-chunks
                msg = b"".join(self._chunks)
                self._chunks, self._size = [], 0
                return msg
            self._size += header
            if self._size > self.max_message_size:
                raise FramingError(f"base:1.1 message exceeds the maximum of "
                                   f"{self.max_message_size} bytes")
            self._need = header

    def _parse_header(self) -> int | None:
        """Consume one chunk header: its size, 0 for end-of-chunks, None if incomplete."""
        buf = self._buf
        if not buf:
            return None
        if buf[0:1] != b"\n":
            raise FramingError(f"expected LF starting a chunk header, got {bytes(buf[:12])!r}")
        if len(buf) < 2:
            return None
        if buf[1:2] != b"#":
            raise FramingError(f"expected '#' after LF in a chunk header, got {bytes(buf[:12])!r}")
        if len(buf) < 3:
            return None
        if buf[2:3] == b"#":                # end-of-chunks: \n##\n
            if len(buf) < 4:
                return None
            if buf[3:4] != b"\n":
                raise FramingError(f"expected LF closing end-of-chunks, got {bytes(buf[:12])!r}")
            if not self._chunks:
                raise FramingError("end-of-chunks before any chunk (empty message)")
            del buf[:4]
            return 0
        end = buf.find(b"\n", 2, 2 + 11)    # chunk-size is at most 10 digits
        if end < 0:
            digits = bytes(buf[2:2 + 11])
            if not digits.isdigit() or len(digits) > 10:
                raise FramingError(f"malformed chunk-size {digits!r}: "
                                   "expected 1-10 digits followed by LF")
            return None
        size_text = bytes(buf[2:end])
        if not re.fullmatch(rb"[1-9][0-9]{0,9}", size_text):
            raise FramingError(f"malformed chunk-size {size_text!r}: expected a decimal "
                               "number 1..4294967295 without leading zeros")
        size = int(size_text)
        if size > MAX_CHUNK_SIZE:
            raise FramingError(f"chunk-size {size} exceeds {MAX_CHUNK_SIZE}")
        del buf[:end + 1]
        return size


def encode(message: bytes, version: Base) -> bytes:
    """Frame one message for the wire."""
    if not message:
        raise FramingError("refusing to frame an empty message")
    if version is Base.V10:
        if EOM in message:
            raise FramingError("a base:1.0 message must not contain ]]>]]>")
        return message + EOM
    return b"\n#%d\n%s%s" % (len(message), message, END_OF_CHUNKS)


def build_hello(capabilities: Iterable[str], session_id: int | None = None) -> bytes:
    """A <hello> document (with XML declaration); the server passes its session-id."""
    hello = etree.Element(f"{{{BASE_NS}}}hello", nsmap={None: BASE_NS})
    caps = etree.SubElement(hello, f"{{{BASE_NS}}}capabilities")
    for uri in capabilities:
        etree.SubElement(caps, f"{{{BASE_NS}}}capability").text = uri
    if session_id is not None:
        etree.SubElement(hello, f"{{{BASE_NS}}}session-id").text = str(session_id)
    return etree.tostring(hello, xml_declaration=True, encoding="UTF-8")


def _parse_hello(data: bytes) -> tuple[set[str], etree._Element]:
    try:
        root = etree.fromstring(data, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise HelloError(f"hello is not well-formed XML: {exc}") from exc
    if root.tag != f"{{{BASE_NS}}}hello":
        raise HelloError(f"expected <hello> in {BASE_NS}, got {root.tag}")
    caps = {(c.text or "").strip()
            for c in root.iterfind(f"{{{BASE_NS}}}capabilities/{{{BASE_NS}}}capability")}
    caps.discard("")
    if NC_BASE_10 not in caps and NC_BASE_11 not in caps:
        raise HelloError("hello advertises neither base:1.0 nor base:1.1")
    return caps, root


def parse_client_hello(data: bytes) -> set[str]:
    """The capability URIs of a client's <hello>; a client must not send a session-id."""
    caps, root = _parse_hello(data)
    if root.find(f"{{{BASE_NS}}}session-id") is not None:
        raise HelloError("client hello carries a session-id (RFC 6241 section 8.1)")
    return caps


def parse_server_hello(data: bytes) -> tuple[set[str], int]:
    """Capabilities and session-id of a server's <hello> (used by raw test clients)."""
    caps, root = _parse_hello(data)
    sid = root.findtext(f"{{{BASE_NS}}}session-id")
    if sid is None or not sid.strip().isdigit() or int(sid) == 0:
        raise HelloError(f"server hello carries no valid session-id: {sid!r}")
    return caps, int(sid)
