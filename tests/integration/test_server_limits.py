"""A server no client can stop (issue 13): each probe of the issue, repeated against an
ndirector daemon as its own process over real SSH, gets the expected answer -- refused,
bounded or served -- while another client keeps getting replies.

Latencies are printed (run with -s to see them), not asserted: speed is for benchmarks.
Every daemon runs with limits set low by its `nvo3 serve` flags so that each probe is quick.
"""

from __future__ import annotations

import re
import resource
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import pytest
from lxml import etree

from nvo3.daemon import users_of
from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client import Client, ClientError, RemoteRpcError, connect
from nvo3.netconf.proto.xml import BASE_NS, NOTIF_NS

if TYPE_CHECKING:
    from conftest import Daemons

ND = "urn:nvo3:yang:nvo3-ndirector"
EOM = b"]]>]]>"
HELLO = (f'<hello xmlns="{BASE_NS}"><capabilities><capability>urn:ietf:params:netconf:base:1.0'
         "</capability></capabilities></hello>").encode()


# helpers ---------------------------------------------------------------------------------------
def serve(daemons: Daemons, *flags: str) -> RoleProcess:
    """A fresh ndirector daemon started with `flags` (limits)."""
    state_dir = daemons.root / f"nd{len(daemons.started)}"
    state_dir.mkdir()
    proc = start_role("ndirector", state_dir, extra_args=flags)
    daemons.started.append(proc)
    return proc


def daemon_log(proc: RoleProcess) -> str:
    return (proc.state_dir / "daemon.log").read_text(errors="replace")


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def add_user(proc: RoleProcess, name: str, password: str) -> None:
    users_of(proc.state_dir).add(name, password=password)


def login(proc: RoleProcess, user: str | None = None, password: str | None = None,
          **kw: object) -> Client:
    return connect(proc.host, proc.port, user or proc.username, password or proc.password,
                   host_key=proc.host_key, **kw)  # type: ignore[arg-type]


def timed(what: str, fn: Callable[[], object]) -> float:
    """Run `fn`, print and return how long it took (ms)."""
    start = time.perf_counter()
    fn()
    ms = (time.perf_counter() - start) * 1000
    print(f"  {what}: {ms:.1f} ms")
    return ms


def hello(proc: RoleProcess, n: int) -> float:
    """A new session's hello: its time from the subsystem request (printed, in ms)."""
    start = time.perf_counter()
    raw = RawNetconf(proc)
    try:
        assert b"<session-id>" in raw.server_hello
        print(f"  new session's hello {n}: {raw.hello_ms:.1f} ms (login included: "
              f"{(time.perf_counter() - start) * 1000:.1f} ms)")
        return raw.hello_ms
    finally:
        raw.close()


def nve_config(count: int, first: int = 1) -> str:
    items = "".join(f"<nve><name>host{n}</name><address>198.18.1.{n}</address>"
                    f"<vtep-address>198.18.0.{n}</vtep-address></nve>"
                    for n in range(first, first + count))
    return f'<config xmlns="{BASE_NS}"><ndirector xmlns="{ND}"><nves>{items}</nves></ndirector></config>'


class RawNetconf:
    """A bare NETCONF/SSH client on paramiko, base:1.0 framing, that reads only when told:
    the stalled subscriber (its SSH window fills when it stops reading)."""

    def __init__(self, proc: RoleProcess, window: int = 32768, user: str | None = None,
                 password: str | None = None) -> None:
        self.sock = socket.create_connection((proc.host, proc.port), timeout=10)
        self.transport = paramiko.Transport(self.sock, default_window_size=window,
                                            default_max_packet_size=16384)
        self.transport.start_client(timeout=10)
        self.transport.auth_password(user or proc.username, password or proc.password)
        self.channel = self.transport.open_session(window_size=window, max_packet_size=16384)
        start = time.perf_counter()
        self.channel.invoke_subsystem("netconf")
        self.channel.settimeout(10)
        self.buffer = b""
        self.server_hello = self.read_message()
        #: from asking for the netconf subsystem to the server's hello (the engine's part)
        self.hello_ms = (time.perf_counter() - start) * 1000
        self.channel.sendall(HELLO + EOM)

    def read_message(self) -> bytes:
        while EOM not in self.buffer:
            data = self.channel.recv(65536)
            if not data:
                raise EOFError("server closed the channel")
            self.buffer += data
        message, self.buffer = self.buffer.split(EOM, 1)
        return message

    def rpc(self, body: str, message_id: int = 1) -> bytes:
        self.channel.sendall(f'<rpc xmlns="{BASE_NS}" message-id="{message_id}">{body}</rpc>'
                             .encode() + EOM)
        return self.read_message()

    def close(self) -> None:
        self.transport.close()


# the stalled subscriber -------------------------------------------------------------------------
def test_stalled_subscriber_is_dropped_while_others_are_served(daemons: Daemons) -> None:
    """A subscriber that never reads: the burst of notifications fills its SSH window and its
    queue; every other session's edits and a new session's hello are answered meanwhile,
    and the stalled one is dropped with a WARNING naming session, user, peer and reason."""
    proc = serve(daemons, "--output-queue-bytes", "65536", "--send-timeout", "5")
    print("\nbefore any subscriber (for comparison):")
    for n in range(3):
        timed(f"login and close {n}", lambda: login(proc).close())
        hello(proc, n)
    stalled = RawNetconf(proc, window=16384)
    reply = stalled.rpc(f'<create-subscription xmlns="{NOTIF_NS}"/>')
    assert b"<ok/>" in reply
    local_port = stalled.sock.getsockname()[1]
    # the stalled client now reads nothing more

    burst_done = threading.Event()
    burst_count = [0]

    def burst() -> None:          # config changes: one netconf-config-change each
        with login(proc) as c:
            for n in range(1, 201):
                if burst_done.is_set():
                    return
                c.edit_config(nve_config(1, n % 250 + 1), target="running")
                burst_count[0] += 1
        burst_done.set()

    burster = threading.Thread(target=burst, daemon=True)
    burster.start()
    edit_ms: list[float] = []
    hello_ms: list[float] = []
    with login(proc, rpc_timeout=10) as other:
        print("\nwhile a subscriber is stalled:")
        for n in range(10):
            edit = nve_config(1, 250 - n % 5)
            edit_ms.append(timed(f"edit-config {n}", lambda: other.edit_config(
                edit, target="candidate")))  # noqa: B023 (called at once)
            hello_ms.append(hello(proc, n))
    burster.join(60)
    print(f"  notifications published: {burst_count[0]}, edit-config max "
          f"{max(edit_ms):.1f} ms, hello max {max(hello_ms):.1f} ms")
    assert burst_count[0] > 0 and not burster.is_alive()
    assert len(edit_ms) == len(hello_ms) == 10

    def dropped() -> bool:
        return "dropping the session" in daemon_log(proc)
    assert wait_for(dropped, 30), daemon_log(proc)[-3000:]
    line = next(x for x in daemon_log(proc).splitlines() if "dropping the session" in x)
    print(f"  {line}")
    assert "WARNING" in line and f"user={proc.username}" in line
    assert f":{local_port}" in line and re.search(r"sid=\d+", line)
    assert re.search(r"bytes of output waiting|no output for|messages waiting", line)
    assert wait_for(lambda: not stalled.transport.is_active(), 10)
    stalled.close()
    with login(proc) as c:            # the server serves as before
        assert len(c.get_config("running")) == 1


def test_subscriber_accepting_nothing_is_dropped_after_the_send_timeout(daemons: Daemons,
                                                                       ) -> None:
    """Within the queue limits, but its window stays shut past --send-timeout: dropped."""
    proc = serve(daemons, "--send-timeout", "2")
    stalled = RawNetconf(proc, window=16384)
    assert b"<ok/>" in stalled.rpc(f'<create-subscription xmlns="{NOTIF_NS}"/>')
    with login(proc) as editor:
        n = 0
        while "accepted no output" not in daemon_log(proc) and n < 200:
            n += 1
            editor.edit_config(nve_config(1, n % 250 + 1), target="running")
            time.sleep(0.05)
        assert wait_for(lambda: "accepted no output" in daemon_log(proc), 10)
        timed("get-config of the editor", lambda: editor.get_config("running"))
    line = next(x for x in daemon_log(proc).splitlines() if "accepted no output" in x)
    print(f"\nafter {n} notifications: {line}")
    assert "WARNING" in line and re.search(r"client accepted no output for [23] s", line)
    stalled.close()


# accept errors ----------------------------------------------------------------------------------
def test_fd_exhaustion_does_not_close_the_listener(daemons: Daemons) -> None:
    """Under a low RLIMIT_NOFILE the daemon runs out of descriptors (EMFILE at accept); it
    pauses, logs it once and keeps accepting: once the connections are gone, a normal client
    logs in and gets replies."""
    proc = serve(daemons, "--max-pending-auth", "1000", "--max-pending-auth-per-source", "1000")
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (64, 64))
    held = []
    try:
        for _ in range(120):
            try:
                held.append(socket.create_connection((proc.host, proc.port), timeout=2))
            except OSError:
                break

        def emfile() -> bool:
            return "Too many open files" in daemon_log(proc)
        assert wait_for(emfile, 20), daemon_log(proc)[-2000:]
        print(f"\nheld {len(held)} connections; daemon log:")
        print("\n".join(x for x in daemon_log(proc).splitlines() if "accept" in x))
    finally:
        for s in held:
            s.close()
    assert proc.process.poll() is None
    with login(proc, timeout=30) as c:
        timed("get-config after the descriptors came back",
              lambda: c.get_config("running"))
    assert daemon_log(proc).count("pausing and accepting again") >= 1
    assert "listener on" not in daemon_log(proc)      # the listener never failed


# unauthenticated connections ------------------------------------------------------------------
def test_unauthenticated_connections_are_capped_and_timed_out(daemons: Daemons) -> None:
    proc = serve(daemons, "--max-pending-auth", "8", "--max-pending-auth-per-source", "4",
                 "--login-timeout", "3")
    with login(proc) as served:                    # a logged-in client, served throughout
        pending = [socket.create_connection((proc.host, proc.port), timeout=5)
                   for _ in range(4)]
        for s in pending:                          # each got the SSH banner: being served
            assert s.recv(4).startswith(b"SSH-")
        extra = socket.create_connection((proc.host, proc.port), timeout=5)
        start = time.monotonic()
        assert extra.recv(100) == b""              # closed at once, no banner
        print(f"\nover the cap: closed after {(time.monotonic() - start) * 1000:.1f} ms")
        extra.close()
        timed("get-config meanwhile", lambda: served.get_config("running"))
        # the login timeout ends the pending ones; then logins work again
        for s in pending:
            s.settimeout(10)
            while s.recv(4096):
                pass
            s.close()
        with login(proc) as c:
            assert c.get_config("running") is not None
        timed("get-config after", lambda: served.get_config("running"))
    assert "4 connections from 127.0.0.1 waiting to log in (the limit)" in daemon_log(proc)


# sessions --------------------------------------------------------------------------------------
def test_session_caps_in_total_and_per_user(daemons: Daemons) -> None:
    proc = serve(daemons, "--max-sessions", "3", "--max-sessions-per-user", "2")
    add_user(proc, "alice", "alice-password-1")
    add_user(proc, "bob", "bob-password-1")
    alice = ("alice", "alice-password-1")
    bob = ("bob", "bob-password-1")
    with login(proc, *alice) as a1, login(proc, *alice) as a2:
        with pytest.raises(ClientError):
            login(proc, *alice).close()                   # a third session of alice
        with login(proc, *bob) as b1:
            with pytest.raises(ClientError):
                login(proc, *bob).close()                 # the fourth in total
            with login(proc) as peer:                     # the recovery admin (the roles'
                for c in (a1, a2, b1, peer):              # own peers) is never capped
                    timed("get-config of an admitted session",
                          lambda c=c: c.get_config("running"))
    with login(proc, *alice) as again:                    # the sessions ended: room again
        assert again.get_config("running") is not None
    text = daemon_log(proc)
    assert "user alice has 2 sessions open, the limit is 2" in text
    assert "3 sessions open, the limit is 3" in text


def test_idle_session_is_closed_but_not_a_subscriber(daemons: Daemons) -> None:
    proc = serve(daemons, "--idle-timeout", "2")
    idle = login(proc)
    busy = login(proc)
    subscriber = login(proc)
    subscriber.create_subscription()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        busy.get_config("running")                 # one RPC every 0.5 s: never idle
        time.sleep(0.5)
    assert wait_for(lambda: not idle.connected, 5)
    assert busy.connected and subscriber.connected
    timed("get-config of the busy session", lambda: busy.get_config("running"))
    timed("get-config of the subscriber", lambda: subscriber.get_config("running"))
    for c in (idle, busy, subscriber):
        c.close()
    assert re.search(r"no RPC for \d+ s \(idle timeout 2 s\)", daemon_log(proc))


def test_oversized_message_closes_only_its_session(daemons: Daemons) -> None:
    proc = serve(daemons, "--max-message-size", "65536")
    with login(proc) as other:
        small = nve_config(100)                    # about 9 KB: accepted
        assert len(small) < 65536
        other.edit_config(small, target="candidate")
        big = RawNetconf(proc)
        body = f"<get-config><source><running/></source><filter>{'<x/>' * 40000}</filter>" \
               "</get-config>"                     # 160 KB
        big.channel.sendall(f'<rpc xmlns="{BASE_NS}" message-id="1">{body}</rpc>'.encode())
        with pytest.raises((EOFError, OSError)):
            big.channel.sendall(b"<x/>" * 1000 + EOM)
            big.read_message()
        big.close()
        timed("get-config of another session", lambda: other.get_config("candidate"))
    assert "message exceeds 65536 bytes" in daemon_log(proc)


def _try_password(proc: RoleProcess, user: str, password: str) -> tuple[bool, float]:
    """One SSH password attempt: (accepted, seconds it took)."""
    sock = socket.create_connection((proc.host, proc.port), timeout=30)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=30)
        start = time.monotonic()
        try:
            transport.auth_password(user, password)
            ok = True
        except paramiko.AuthenticationException:
            ok = False
        return ok, time.monotonic() - start
    finally:
        transport.close()


def test_failed_logins_cost_a_growing_delay_for_that_user_only(daemons: Daemons) -> None:
    proc = serve(daemons, "--login-delay", "0.5", "--login-delay-max", "2")
    add_user(proc, "bob", "bob-password-1")
    with login(proc) as served:
        times = []
        for n in range(4):
            ok, took = _try_password(proc, "admin", f"wrong-{n}")
            assert not ok
            times.append(took)
            print(f"\nwrong password {n + 1}: {took:.2f} s", end="")
        print()
        assert times[1] > 0.9 and times[3] > 1.9    # 0.5, 1, 2, 2 s of delay
        ok, took = _try_password(proc, "bob", "bob-password-1")
        print(f"bob's login meanwhile: {took * 1000:.1f} ms")
        assert ok
        timed("get-config of a logged-in session", lambda: served.get_config("running"))
    ok, _ = _try_password(proc, "admin", proc.password)     # the right one is let in
    assert ok


# the costly filter ------------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid`."""
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                kids.add(int(entry.name))
    return kids


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def test_costly_xpath_filter_is_stopped_at_its_budget(daemons: Daemons) -> None:
    proc = serve(daemons, "--xpath-budget", "1")
    with login(proc) as c:
        c.edit_config(nve_config(250), target="running")
    for _ in range(30):        # until the daemon is done with the edit's aftermath
        before = _cpu_seconds(proc.pid)
        time.sleep(0.5)
        if _cpu_seconds(proc.pid) - before < 0.05:
            break
    before = _cpu_seconds(proc.pid)
    time.sleep(1)
    print(f"\n  daemon CPU in the second before (its peers' reconnects): "
          f"{_cpu_seconds(proc.pid) - before:.2f} s")
    select = "//*[count(//*[count(//*) > 1]) > 1]"          # O(n^3) over ~1,000 nodes
    result: list[BaseException | None] = []

    def costly() -> None:
        with login(proc, rpc_timeout=60) as c:
            try:
                c.get_config("running", filter=("xpath", select))
                result.append(None)
            except RemoteRpcError as exc:
                result.append(exc)

    worker = threading.Thread(target=costly)
    with login(proc) as other:
        print()
        timed("get-config of another session, before", lambda: other.get_config(
            "running", filter=("subtree", f'<ndirector xmlns="{ND}"><nves><nve><name>host7</name>'
                              '</nve></nves></ndirector>')))
        worker.start()
        while worker.is_alive():
            timed("get-config of another session", lambda: other.get_config(
                "running", filter=("subtree", f'<ndirector xmlns="{ND}"><nves><nve><name>host7</name>'
                                  '</nve></nves></ndirector>')))
            time.sleep(0.2)
        worker.join()
        assert isinstance(result[0], RemoteRpcError), result
        err = result[0].reply
        print(f"  {etree.tostring(err).decode()[:400]}")
        tag = err.xpath("//nc:error-tag/text()", namespaces={"nc": BASE_NS})
        message = err.xpath("string(//nc:error-message)", namespaces={"nc": BASE_NS})
        assert tag == ["operation-failed"]
        assert "exceeded its budget of 1 s of CPU time" in message
        assert _children(proc.pid) == set()            # its work was stopped
        for n in range(3):
            before = _cpu_seconds(proc.pid)
            time.sleep(1)
            print(f"  daemon CPU in second {n + 1} after: {_cpu_seconds(proc.pid) - before:.2f} s")
        cheap = other.get_config("running", filter=("xpath", "//nve[name='host7']/address"))
        assert b"198.18.1.7" in etree.tostring(cheap)


# SSH algorithms ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,offer", [
    ("kex", ("diffie-hellman-group1-sha1",)),
    ("kex", ("diffie-hellman-group14-sha1",)),
    ("ciphers", ("3des-cbc",)),
    ("ciphers", ("aes128-cbc",)),
    ("digests", ("hmac-md5",)),
    ("digests", ("hmac-sha1",)),
])
def test_weak_ssh_algorithms_are_refused(nd: RoleProcess, kind: str, offer: tuple[str, ...]
                                         ) -> None:
    sock = socket.create_connection((nd.host, nd.port), timeout=10)
    transport = paramiko.Transport(sock)
    setattr(transport.get_security_options(), kind, offer)
    try:
        with pytest.raises(paramiko.SSHException, match=r"[Ii]ncompatible|no acceptable"):
            transport.start_client(timeout=10)
    finally:
        transport.close()
    with nd.connect() as c:                        # the default client is served
        assert c.get_config("running") is not None


def test_modern_algorithms_are_negotiated(nd: RoleProcess) -> None:
    sock = socket.create_connection((nd.host, nd.port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        cipher = transport.remote_cipher
        mac = transport.remote_mac
        print(f"\nnegotiated: cipher {cipher}, mac {mac}")
        assert "cbc" not in cipher and mac.startswith("hmac-sha2")
    finally:
        transport.close()


# disconnects -----------------------------------------------------------------------------------
def test_client_disconnects_are_logged_at_info_without_traceback(daemons: Daemons) -> None:
    proc = serve(daemons)
    before = len(daemon_log(proc))
    c = login(proc)
    c.get_config("running")
    c.close()                                       # an orderly close
    raw = RawNetconf(proc)                          # and a connection reset mid-session
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.sock.close()
    assert wait_for(lambda: daemon_log(proc)[before:].count("session ended") >= 2, 10)
    time.sleep(0.5)
    text = daemon_log(proc)[before:]
    print("\n" + text)
    assert "Traceback" not in text
    assert not [x for x in text.splitlines() if " ERROR " in x]


# filtered notifications ------------------------------------------------------------------------
def test_a_subscription_filter_runs_on_the_subscribers_own_output(daemons: Daemons) -> None:
    """A filtered subscription gets exactly what its filter selects (the filter runs on its
    session's writer thread, not on the publisher's)."""
    proc = serve(daemons)
    ncn = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
    got: list[str] = []
    with login(proc) as sub, login(proc) as editor:
        sub.create_subscription(lambda n: got.append(etree.tostring(n).decode()),
                                filter=("xpath", "/netconf-config-change"))
        for n in range(1, 4):
            editor.edit_config(nve_config(1, n), target="running")
        login(proc).close()                          # session start and end: filtered out
        assert wait_for(lambda: len(got) >= 3, 10), got
        time.sleep(0.5)
        assert len(got) == 3 and all(f'xmlns="{ncn}"' in g and "netconf-config-change" in g
                                     for g in got)
        timed("get-config of the editor", lambda: editor.get_config("running"))
