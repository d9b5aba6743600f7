"""In-memory harness for engine unit tests: a test role and sessions without SSH.

The transport is replaced by a list-collecting sink; everything else (schema, libyang
validation, datastores on disk) is the real engine. Tests over real SSH live in
tests/integration/.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.proto.xml import BASE_NS
from nvo3.netconf.server.engine import NetconfServer
from nvo3.netconf.server.role_api import ApplyError, ConfigChange, Role

TEST_YANG = Path(__file__).parent / "yang"
NS = "urn:nvo3:test:engine"
BASE = BASE_NS


class EngineTestRole(Role):
    """Records applied changes; refuses a top/name of "refuse"; answers ping."""

    name = "engine-test"
    modules = ("engine-test",)

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[ConfigChange] = []
        self.hits = 0

    def apply(self, change: ConfigChange) -> None:
        if change.after.get("top", {}).get("name") == "refuse":
            raise ApplyError("name 'refuse' is refused by the role")
        self.changes.append(change)

    def state(self) -> dict:
        return {"engine-test": {"top": {"counters": {"hits": self.hits}}}}

    def rpc_handlers(self) -> dict:
        def ping(args: dict) -> dict:
            self.hits += 1
            assert self.notifier is not None
            self.notifier.notify("engine-test", "pinged", {"count": args["count"]})
            return {"replies": args["count"]}
        return {"engine-test:ping": ping}


class ListSink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.closed = False

    def send(self, message: bytes) -> None:
        self.messages.append(message)

    def close(self) -> None:
        self.closed = True


class Client:
    """One in-memory session: `rpc(xml)` returns the parsed <rpc-reply>."""

    def __init__(self, server: NetconfServer, user: str = "alice"):
        self.sink = ListSink()
        self.session = server.open_session(user, ("127.0.0.1", 40000), self.sink)
        self.ids = 0

    def rpc(self, body: str) -> etree._Element:
        self.ids += 1
        before = len(self.sink.messages)
        self.session.on_message(
            f'<rpc xmlns="{BASE}" message-id="{self.ids}">{body}</rpc>'.encode())
        replies = [m for m in self.sink.messages[before:] if b"rpc-reply" in m[:200]]
        assert len(replies) == 1, self.sink.messages[before:]
        return etree.fromstring(replies[0])

    def notifications(self) -> list[etree._Element]:
        return [etree.fromstring(m) for m in self.sink.messages if b"<notification" in m[:100]]

    def close(self) -> None:
        self.session.on_close()


def make_server(state_dir: Path, role: Role | None = None) -> NetconfServer:
    server = NetconfServer(role or EngineTestRole(), state_dir, yang_dirs=(TEST_YANG, YANG_DIR))
    server.start()
    return server


def restart(server: NetconfServer, role: Role | None = None) -> NetconfServer:
    """Stop `server` (its files are released) and start a new one on its state directory."""
    server.stop()
    return make_server(server.state_dir, role)


def saved_running(state_dir: Path) -> dict[str, bytes]:
    """The files that hold the running configuration (base snapshots and journals), by name:
    what a restart would load."""
    return {p.name: p.read_bytes() for p in sorted(state_dir.glob("running.*"))}


def errors(reply: etree._Element) -> list[dict[str, str]]:
    """Each <rpc-error> as {child local name: text} (error-info children flattened)."""
    out = []
    for err in reply.iter(f"{{{BASE}}}rpc-error"):
        item = {}
        for child in err.iter():
            if child is not err and len(child) == 0:
                item[etree.QName(child).localname] = (child.text or "").strip()
        out.append(item)
    return out


def ok(reply: etree._Element) -> bool:
    return reply.find(f"{{{BASE}}}ok") is not None
