"""nvo3.dataplane.fake: the in-memory kernel keeps the Kernel contract the Linux one keeps."""

from __future__ import annotations

import errno

import pytest

from nvo3.dataplane.fake import FakeKernel
from nvo3.dataplane.kernel import KernelApplyError
from nvo3.dataplane.model import DesiredState, FloodEntry, Network, Policy, Port, RemoteMac
from nvo3.dataplane.tracker import Batch, DeltaTracker, Update

NET = Network(100, "198.18.0.1")
PORT = Port("tap1", 100, None, "02:00:00:00:00:01", ("198.19.0.1",))
STATE = DesiredState(networks=(NET,), ports=(PORT,), floods=(FloodEntry(100, "198.18.0.2"),),
                     remote_macs=(RemoteMac(100, "02:00:00:00:00:02", "198.18.0.2"),),
                     policies=(Policy("tap1", rate_kbps=1000),))


def converge(k: FakeKernel, state: DesiredState) -> None:
    t = DeltaTracker()
    t.set_desired(state)
    t.observe(k.dump())
    k.apply(t.pending())


def test_what_is_applied_is_dumped_back_and_removed_again() -> None:
    k = FakeKernel(ports=("tap1",))
    converge(k, STATE)
    assert k.dump() == STATE
    converge(k, DesiredState())
    assert k.dump() == DesiredState()
    assert {lk.name for lk in k.dump_links()} == {"lo", "tap1"}


def test_a_missing_port_is_refused_and_nothing_changes() -> None:
    k = FakeKernel()
    with pytest.raises(KernelApplyError) as err:
        converge(k, STATE)
    assert err.value.obj == PORT and err.value.errno == errno.ENODEV
    assert "port tap1 does not exist" in err.value.reason
    assert k.dump() == DesiredState() and [lk.name for lk in k.dump_links()] == ["lo"]


def test_a_foreign_device_is_not_taken_over() -> None:
    k = FakeKernel(ports=("br-100",))
    with pytest.raises(KernelApplyError) as err:
        k.apply(Batch(updates=(Update(NET),)))
    assert err.value.errno == errno.EEXIST and "not owned by nvo3" in err.value.reason


def test_fail_next_fails_that_many_applies_then_none() -> None:
    k = FakeKernel(ports=("tap1",))
    k.fail_next(RemoteMac(100, "02:00:00:00:00:02", "198.18.0.9"), errno.EINVAL, times=2)
    for _ in range(2):
        with pytest.raises(KernelApplyError) as err:
            converge(k, STATE)
        assert err.value.reason == "Invalid argument (EINVAL)"
        assert k.dump() == DesiredState()
    converge(k, STATE)
    assert k.dump() == STATE


def test_deleting_what_is_absent_is_success() -> None:
    k = FakeKernel(ports=("tap1",))
    k.apply(Batch(deletes=(*STATE.remote_macs, *STATE.floods, PORT, NET)))
    assert k.dump() == DesiredState()
