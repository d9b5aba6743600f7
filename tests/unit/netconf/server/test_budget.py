"""A computation with a CPU-time budget, in a forked child (the xpath filter budget)."""

from __future__ import annotations

import os
import time

import pytest
from lxml import etree

from nvo3.netconf.server.budget import BudgetExceeded, ChildFailed, run_with_budget
from nvo3.netconf.server.filters import FilterBudgetExceeded, FilterError, xpath_filter_bytes


def test_result_comes_back() -> None:
    big = b"x" * 3_000_000                     # more than a pipe holds
    assert run_with_budget(lambda: big, 5) == big


def test_an_exception_becomes_child_failed() -> None:
    def fail() -> bytes:
        raise ValueError("no such thing")
    with pytest.raises(ChildFailed, match="no such thing"):
        run_with_budget(fail, 5)


def test_a_computation_over_budget_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    children: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            children.append(pid)
        return pid
    monkeypatch.setattr(os, "fork", fork)

    def spin() -> bytes:
        while True:
            pass
    start = time.monotonic()
    with pytest.raises(BudgetExceeded):
        run_with_budget(spin, 0.3)
    print(f"stopped after {time.monotonic() - start:.2f} s")
    assert len(children) == 1
    with pytest.raises(ChildProcessError):    # the child was killed and reaped
        os.waitpid(children[0], os.WNOHANG)


def _data(n: int) -> etree._Element:
    data = etree.fromstring(b'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"/>')
    top = etree.SubElement(data, "{urn:t}top")
    for i in range(n):
        etree.SubElement(etree.SubElement(top, "{urn:t}item"), "{urn:t}name").text = str(i)
    return data


def test_xpath_filter_within_and_over_budget() -> None:
    data = _data(400)
    out = xpath_filter_bytes(data, "/top/item[name='7']", {}, lambda e: ("name",), 5)
    assert etree.fromstring(out).xpath("//*[local-name()='name']/text()") == ["7"]
    with pytest.raises(FilterBudgetExceeded, match=r"exceeded its budget of 0\.5 s"):
        xpath_filter_bytes(data, "//*[count(//*[count(//*) > 1]) > 1]", {},
                           lambda e: ("name",), 0.5)
    with pytest.raises(FilterError, match="unknown namespace prefix"):
        xpath_filter_bytes(data, "/x:top", {}, lambda e: None, 5)
