"""The RTM_GETLINK requests that look links up by name, and their answers decoded."""

from __future__ import annotations

import struct

from nvo3.dataplane import nlbulk

HDR = struct.Struct("=IHHII")


def test_link_get_request_names_the_link_padded() -> None:
    for name in ("br-100", "vx-16777215", "tap1234567"):
        raw = nlbulk.encode_link_get(name, 0x40000007)
        length, mtype, flags, seq, _pid = HDR.unpack_from(raw)
        assert (length, mtype, flags, seq) == (len(raw), nlbulk.RTM_GETLINK,
                                               nlbulk.NLM_F_REQUEST, 0x40000007)
        assert len(raw) % 4 == 0
        alen, atype = struct.unpack_from("=HH", raw, 32)
        assert atype == nlbulk.IFLA_IFNAME and raw[36:32 + alen] == name.encode() + b"\0"


def test_link_answer_decodes_as_a_dump_entry() -> None:
    """The answer to a request is an RTM_NEWLINK with the link's attributes."""
    name, alias = b"br-100\0", b"nvo3"
    attrs = (struct.pack("=HH", 4 + len(name), nlbulk.IFLA_IFNAME) + name + bytes(1)
             + struct.pack("=HHI", 8, nlbulk.IFLA_MASTER, 0)
             + struct.pack("=HH", 4 + len(alias), nlbulk.IFLA_IFALIAS) + alias)
    payload = memoryview(struct.pack("=BxHiII", 0, 1, 42, 0x1043, 0) + attrs)
    assert nlbulk.parse_link(payload) == nlbulk.LinkEntry(42, "br-100", 0, 0x1043, "nvo3")
