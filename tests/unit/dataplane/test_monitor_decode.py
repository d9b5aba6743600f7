"""The monitor's fast FDB decode and the echo keys of the agent's own bulk changes."""

from __future__ import annotations

from nvo3.dataplane import monitor, nlbulk

MAC = nlbulk.mac_bytes("02:4e:00:00:00:01")
CACHEINFO = b"\x14\x00\x03\x00" + bytes(16)


def _notification(msg: nlbulk.NeighMsg, state: int, extra: bytes) -> bytes:
    """A kernel-style notification of ``msg``: more state bits, more attributes after ours."""
    raw = bytearray(nlbulk.encode(msg, 0, ack=False) + extra)
    raw[0:4] = len(raw).to_bytes(4, "little")
    raw[6:8] = (0).to_bytes(2, "little")            # no request flags
    raw[24:26] = state.to_bytes(2, "little")
    return bytes(raw)


def test_decode_vxlan_and_bridge_fdb_notifications() -> None:
    vx = nlbulk.NeighMsg(nlbulk.OP_ADD, nlbulk.AF_BRIDGE, 3, nlbulk.NUD_PERMANENT,
                         nlbulk.NTF_SELF, MAC, nlbulk.ip_bytes("198.18.1.1")[1])
    br = nlbulk.NeighMsg(nlbulk.OP_DEL, nlbulk.AF_BRIDGE, 3, nlbulk.NUD_NOARP, 0, MAC, None)
    six = nlbulk.NeighMsg(nlbulk.OP_ADD, nlbulk.AF_BRIDGE, 3, nlbulk.NUD_PERMANENT,
                          nlbulk.NTF_SELF, MAC, nlbulk.ip_bytes("fd00::1")[1])
    data = [_notification(vx, 0xc0, CACHEINFO),
            _notification(br, 0x40, b"\x08\x00\x09\x00\x02\x00\x00\x00" + CACHEINFO),
            _notification(six, 0x80, CACHEINFO)]
    events: list[monitor.NetlinkEvent] = []
    for d in data:
        monitor.decode(d, events)
    assert [(e.what, e.action, e.ifindex, e.mac, e.dst, e.state) for e in events] == [
        ("fdb", "new", 3, "02:4e:00:00:00:01", "198.18.1.1", 0xc0),
        ("fdb", "del", 3, "02:4e:00:00:00:01", None, 0x40),
        ("fdb", "new", 3, "02:4e:00:00:00:01", "fd00::1", 0x80)]


def test_echo_key_matches_request_and_notification_only() -> None:
    vx = nlbulk.NeighMsg(nlbulk.OP_ADD, nlbulk.AF_BRIDGE, 3, nlbulk.NUD_PERMANENT,
                         nlbulk.NTF_SELF, MAC, nlbulk.ip_bytes("198.18.1.1")[1])
    moved = vx._replace(dst=nlbulk.ip_bytes("198.18.1.2")[1])
    sent = nlbulk.encode(vx, 9, ack=False)
    assert nlbulk.echo_key(sent) is not None
    assert nlbulk.echo_key(_notification(vx, 0xc0, CACHEINFO)) == nlbulk.echo_key(sent)
    assert nlbulk.echo_key(_notification(moved, 0xc0, CACHEINFO)) != nlbulk.echo_key(sent)
    gone = nlbulk.NeighMsg(nlbulk.OP_DEL, *vx[1:])
    assert nlbulk.echo_key(_notification(gone, 0xc0, CACHEINFO)) != nlbulk.echo_key(sent)
