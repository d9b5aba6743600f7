"""The shared mapping table against a real three-member etcd cluster (Debian's etcd, started
by the test on 127.0.0.1 and stopped by PID): two data centers' stores, each the leader of its
own data center, deciding as their nDirectors' control threads would (the test plays that
thread: it hands each store what its watch and election delivered)."""

from __future__ import annotations

import json
import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nvo3.lab.etcd import ClientTls, EtcdCluster
from nvo3.roles.ndirector.etcd_client import EtcdClient, EtcdSettings, StoreUnavailable
from nvo3.roles.ndirector.etcd_table import EtcdStore, mapping_key
from nvo3.roles.ndirector.mapping_table import DuplicateMacConfig, MappingTable, Report

MAC = "02:00:00:00:aa:01"
KEY = (7, MAC)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    c = EtcdCluster(Path(tmp_path_factory.mktemp("etcd")))
    try:
        c.start()
        yield c
    finally:
        c.stop()


class Side:
    """One data center's store and the queue its threads deliver to."""

    def __init__(self, cluster: EtcdCluster, dc: str, nves: set[str]) -> None:
        self.q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.table = MappingTable()
        self.store = EtcdStore(EtcdSettings(tuple(cluster.endpoints)), dc, f"{dc}-a",
                               self.table, local_nves=lambda: nves, read_nves=lambda: nves)
        self.store.start(self.q.put)

    def pump(self, seconds: float = 0.3) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.store.handle(self.q.get(timeout=0.05), time.monotonic())
            except queue.Empty:
                pass

    def lead(self) -> None:
        deadline = time.monotonic() + 5
        while not self.store.may_push() and time.monotonic() < deadline:
            self.pump(0.1)
        assert self.store.may_push(), self.store.state()


def stored(cluster: EtcdCluster) -> dict[str, Any] | None:
    _, kv = EtcdClient(EtcdSettings(tuple(cluster.endpoints))).get(mapping_key(KEY))
    return json.loads(kv.value) if kv else None


@pytest.fixture
def sides(cluster: EtcdCluster) -> Iterator[tuple[Side, Side]]:
    EtcdClient(EtcdSettings(tuple(cluster.endpoints))).delete_prefix("/nvo3/")
    a, b = Side(cluster, "dc1", {"h1", "h2"}), Side(cluster, "dc2", {"h3", "h4"})
    try:
        a.lead()
        b.lead()
        yield a, b
    finally:
        a.store.stop()
        b.store.stop()


def report(nve: str, vtep: str, t: float) -> Report:
    return Report(KEY[0], MAC, nve, vtep, ("198.19.0.7",), "activated", "vm7", t)


def test_a_stale_decision_is_refused_by_the_transaction(cluster: EtcdCluster,
                                                        sides: tuple[Side, Side]) -> None:
    a, b = sides
    out = a.store.report(report("h1", "198.18.0.1", 100.0), time.monotonic())
    assert [c.kind for c in out.changes] == ["added"]
    assert stored(cluster) == {"nve": "h1", "vtep": "198.18.0.1", "seq": 0, "ips": ["198.19.0.7"],
                               "state": "activated", "vm": "vm7", "time": 100.0, "dc": "dc1",
                               "frozen": False}
    b.pump()
    assert b.table.get(*KEY).nve == "h1" and b.table.get(*KEY).origin == "dc1"
    out = b.store.report(report("h3", "198.18.0.3", 200.0), time.monotonic())
    assert [(c.kind, c.mapping.seq) for c in out.changes] == [("moved", 1)]
    # dc1 has not seen dc2's write: its own NVE reports an older event; its decision (seq 1,
    # h2) is refused by etcd's compare, the newer location adopted, the old event found stale
    out = a.store.report(report("h2", "198.18.0.2", 150.0), time.monotonic())
    assert [(c.kind, c.mapping.nve, c.mapping.seq) for c in out.changes] == [("moved", "h3", 1)]
    assert a.store.conflicts == 1 and a.table.stats.stale_refused >= 1
    assert stored(cluster)["nve"] == "h3" and stored(cluster)["seq"] == 1
    # a newer event in dc1 moves it back, sequence number 2, seen by dc2 through the watch
    out = a.store.report(report("h2", "198.18.0.2", 300.0), time.monotonic())
    assert [(c.mapping.nve, c.mapping.seq) for c in out.changes] == [("h2", 2)]
    b.pump()
    assert (b.table.get(*KEY).nve, b.table.get(*KEY).seq) == ("h2", 2)


def test_no_quorum_refuses_then_catches_up(cluster: EtcdCluster,
                                           sides: tuple[Side, Side]) -> None:
    a, b = sides
    a.store.report(report("h1", "198.18.0.1", 100.0), time.monotonic())
    b.pump()
    down = cluster.members[:2]
    for m in down:
        cluster.stop_member(m)
    try:
        deadline = time.monotonic() + 5
        while a.store.election.available and time.monotonic() < deadline:
            a.pump(0.1)
        assert not a.store.election.available
        assert "cannot be written" in (a.store.refusal() or "")
        out = a.store.report(report("h2", "198.18.0.2", 200.0), time.monotonic())
        assert not out.changes and a.table.get(*KEY).nve == "h1"     # nothing changed
        assert a.store.state()["available"] is False
        assert a.store.state()["unstored-changes"] >= 1
    finally:
        for m in down:
            cluster.start_member(m, wait=False)
        cluster.wait_healthy(15)
    deadline = time.monotonic() + 8
    while (a.table.get(*KEY).nve != "h2" or (stored(cluster) or {}).get("nve") != "h2") \
            and time.monotonic() < deadline:
        a.pump(0.1)
    assert a.table.get(*KEY).nve == "h2" and stored(cluster)["nve"] == "h2"    # caught up
    b.pump(0.5)
    assert b.table.get(*KEY).nve == "h2"


def test_duplicate_mac_freeze_is_shared(cluster: EtcdCluster, sides: tuple[Side, Side]) -> None:
    a, b = sides
    a.table.configure(DuplicateMacConfig(max_moves=2, window=60))
    a.store.report(report("h1", "198.18.0.1", 1.0), time.monotonic())
    a.store.report(report("h2", "198.18.0.2", 2.0), time.monotonic())
    out = a.store.report(report("h1", "198.18.0.1", 3.0), time.monotonic())
    assert out.duplicates and a.table.get(*KEY).frozen
    assert stored(cluster)["frozen"] is True
    b.pump()
    assert b.table.get(*KEY).frozen                       # dc2 holds it frozen too
    cleared, _ = a.store.clear_duplicates(time.monotonic(), None, None)
    assert cleared == 1 and stored(cluster)["frozen"] is False
    b.pump()
    assert not b.table.get(*KEY).frozen


def _certificates(d: Path) -> ClientTls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    def ssl_(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "1", "-subj", "/CN=nvo3 test CA")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,"
                               "clientAuth\n")
    for who in ("server", "client"):
        ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out",
             f"{who}.csr", "-subj", f"/CN=nvo3 {who}")
        ssl_("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{who}.pem", "-days", "1", "-extfile", "san.cnf")
    return ClientTls(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
                     d / "client.key")


def test_tls_endpoints(tmp_path: Path) -> None:
    """etcd with TLS and client certificates: the nDirector's client with the CA and its
    certificate works; without a client certificate it is refused."""
    tls = _certificates(tmp_path)
    c = EtcdCluster(tmp_path / "etcd", size=1, tls=tls)
    try:
        c.start()
        assert c.endpoints[0].startswith("https://127.0.0.1:")
        good = EtcdSettings.parse(c.endpoints[0], str(tls.ca), str(tls.client_cert),
                                  str(tls.client_key))
        client = EtcdClient(good)
        client.put("/nvo3/tls", "yes")
        assert client.get("/nvo3/tls")[1].value == "yes"       # type: ignore[union-attr]
        with pytest.raises(StoreUnavailable):
            EtcdClient(EtcdSettings.parse(c.endpoints[0], str(tls.ca))).get("/nvo3/tls")
    finally:
        c.stop()
