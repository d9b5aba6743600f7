"""nvo3.roles.nve.drift: kernel events and link dumps judged against what the agent wants."""

from __future__ import annotations

import pytest

from nvo3.dataplane.fake import FakeKernel
from nvo3.dataplane.links import port_alias
from nvo3.dataplane.model import DesiredState, Network, Port, RemoteMac
from nvo3.dataplane.monitor import NetlinkEvent
from nvo3.dataplane.nlbulk import NTF_SELF, NUD_PERMANENT
from nvo3.dataplane.tracker import DeltaTracker
from nvo3.roles.nve.drift import DriftJudge

VNI = 100
LOCAL, REMOTE = "198.18.0.1", "198.18.0.2"
MAC1, MAC2 = "02:00:00:00:01:01", "02:00:00:00:02:01"
IP1, IP2 = "198.19.1.1", "198.19.2.1"
PORT = Port("tap-vm1", VNI, None, MAC1, (IP1,))
WANTED = DesiredState(networks=(Network(VNI, LOCAL),), ports=(PORT,),
                      remote_macs=(RemoteMac(VNI, MAC2, REMOTE, (IP2,)),))


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel(ports=("tap-vm1",))


@pytest.fixture
def judge(kernel: FakeKernel) -> DriftJudge:
    """The judge of an agent that programmed WANTED into ``kernel``."""
    tracker = DeltaTracker()
    tracker.set_desired(WANTED)
    batch = tracker.pending()
    kernel.apply(batch)
    tracker.applied(batch)
    judge = DriftJudge(tracker)
    judge.reindex(kernel.dump_links(), {"tap-vm1"})
    return judge


def index(kernel: FakeKernel, name: str) -> int:
    return {lk.name: lk.index for lk in kernel.dump_links()}[name]


def test_fdb_events(judge: DriftJudge, kernel: FakeKernel) -> None:
    vx = index(kernel, "vx-100")
    as_wanted = NetlinkEvent("fdb", "new", vx, None, MAC2, REMOTE, NUD_PERMANENT, NTF_SELF)
    assert judge.judge([as_wanted]) is None
    moved = as_wanted._replace(dst="198.18.0.7")
    assert judge.judge([as_wanted, moved]) == "resync"
    assert judge.judge([as_wanted._replace(action="del")]) == "resync"
    unwanted = as_wanted._replace(mac="02:00:00:00:09:09")
    assert judge.judge([unwanted]) == "resync"
    assert judge.judge([NetlinkEvent("overrun", "resync", 0)]) == "resync"


def test_neighbour_events(judge: DriftJudge, kernel: FakeKernel) -> None:
    br = index(kernel, "br-100")
    ours = NetlinkEvent("neigh", "new", br, None, MAC2, IP2, NUD_PERMANENT)
    assert judge.judge([ours]) is None
    assert judge.judge([ours._replace(action="del")]) == "resync"
    assert judge.judge([ours._replace(dst=IP1)]) == "resync"


def test_link_events(judge: DriftJudge, kernel: FakeKernel) -> None:
    port, br = index(kernel, "tap-vm1"), index(kernel, "br-100")
    alias = port_alias(PORT)
    as_wanted = NetlinkEvent("link", "new", port, "tap-vm1", master=br, alias=alias, flags=1)
    assert judge.judge([as_wanted]) is None
    assert judge.judge([as_wanted._replace(master=0)]) == "check"
    assert judge.judge([as_wanted._replace(action="del")]) == "check"
    foreign = NetlinkEvent("link", "new", 99, "eth7", master=0)
    assert judge.judge([foreign]) is None


def test_links_as_tracked(judge: DriftJudge, kernel: FakeKernel) -> None:
    assert judge.links_as_tracked(kernel.dump_links())
    lk = kernel.ns.links["tap-vm1"]
    kernel.ns.links["tap-vm1"] = lk.__class__(lk.index, lk.name, 0, lk.flags, "")
    assert not judge.links_as_tracked(kernel.dump_links())
    kernel.ns.links["tap-vm1"] = lk
    kernel.delete_link("br-100")
    assert not judge.links_as_tracked(kernel.dump_links())
