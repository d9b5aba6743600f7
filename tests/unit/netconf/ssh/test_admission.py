"""Admission control of the SSH listener: caps, failed-login delays, accept backoff."""

from __future__ import annotations

import argparse
import logging

import pytest

from nvo3.netconf.limits import ServerLimits, add_arguments, flag, from_args
from nvo3.netconf.ssh.admission import AcceptBackoff, Admission, LoginDelays


def test_pending_auth_caps_in_total_and_per_source() -> None:
    admission = Admission(ServerLimits(max_pending_auth=3, max_pending_auth_per_source=2))
    a, b, c = "198.18.0.1", "198.18.0.2", "198.18.0.3"
    assert admission.begin_auth(a) is None and admission.begin_auth(a) is None
    assert admission.begin_auth(a) == f"2 connections from {a} waiting to log in (the limit)"
    assert admission.begin_auth(b) is None
    assert admission.begin_auth(c) == "3 connections waiting to log in (the limit)"
    admission.end_auth(a)
    assert admission.begin_auth(c) is None
    assert admission.pending == 3 and dict(admission.pending_from) == {a: 1, b: 1, c: 1}


def test_session_caps_total_and_per_user() -> None:
    admission = Admission(ServerLimits(max_sessions=3, max_sessions_per_user=2))
    assert admission.begin_session("alice") is None
    assert admission.begin_session("alice") is None
    assert admission.begin_session("alice") == "user alice has 2 sessions open, the limit is 2"
    assert admission.begin_session("bob") is None
    assert admission.begin_session("bob") == "3 sessions open, the limit is 3"
    admission.end_session("alice")
    assert admission.begin_session("bob") is None



def test_recovery_users_sessions_are_neither_capped_nor_counted() -> None:
    admission = Admission(ServerLimits(max_sessions=2, max_sessions_per_user=1))
    for _ in range(200):                     # e.g. 200 vServers reporting to one vCenter
        assert admission.begin_session("admin", exempt=True) is None
    assert admission.begin_session("alice") is None
    assert admission.begin_session("alice") == "user alice has 1 sessions open, the limit is 1"
    assert admission.begin_session("bob") is None
    assert admission.begin_session("carol") == "2 sessions open, the limit is 2"
    admission.end_session("admin", exempt=True)
    assert admission.exempt["admin"] == 199 and sum(admission.sessions.values()) == 2


class FakeTime:
    """A clock that sleeping advances (or not, for parallel connections)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.advance = True

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.advance:
            self.now += seconds


def delays_with(fake: FakeTime, **limits: float) -> LoginDelays:
    return LoginDelays(ServerLimits(**limits), sleep=fake.sleep,  # type: ignore[arg-type]
                       clock=lambda: fake.now)


def test_login_delay_grows_per_source_and_user_and_is_forgotten_on_success() -> None:
    fake = FakeTime()
    delays = delays_with(fake, login_delay=0.5, login_delay_max=2)
    for _ in range(5):
        delays.failed("198.18.0.1", "admin")
    assert fake.slept == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert delays.failed("198.18.0.1", "bob") == 0.5       # another user: own count
    assert delays.failed("198.18.0.2", "admin") == 0.5     # another source: own count
    delays.succeeded("198.18.0.1", "admin")
    assert delays.failed("198.18.0.1", "admin") == 0.5
    fake.now += 100                                        # long after: forgotten
    assert delays.failed("198.18.0.2", "admin") == 0.5


def test_parallel_failures_of_one_key_queue_up_to_the_login_timeout() -> None:
    fake = FakeTime()
    fake.advance = False             # five connections failing at the same moment
    delays = delays_with(fake, login_delay=1, login_delay_max=4, login_timeout=10)
    for _ in range(5):
        delays.failed("198.18.0.1", "admin")
    assert fake.slept == [1, 3, 7, 10, 10]   # each waits for the ones before it


def test_login_delays_remember_a_bounded_number_of_keys() -> None:
    delays = LoginDelays(ServerLimits(), capacity=3, sleep=lambda s: None)
    for n in range(10):
        delays.failed(f"198.18.0.{n}", "x")
    assert len(delays._failures) == 3


def test_accept_backoff_is_bounded_and_logged_once_per_burst(
        caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    backoff = AcceptBackoff(first=0.01, longest=0.1, sleep=slept.append)
    with caplog.at_level(logging.WARNING):
        for _ in range(6):
            backoff.failed("accept", OSError(24, "Too many open files"))
        backoff.succeeded()
    assert slept == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["accept failed ([Errno 24] Too many open files): pausing and "
                        "accepting again", "accepting again after 6 failures"]


def test_every_limit_has_a_serve_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_args(parser.parse_args([])) == ServerLimits()
    limits = from_args(parser.parse_args([flag("max_sessions"), "5", "--xpath-budget", "0.5"]))
    assert limits.max_sessions == 5 and limits.xpath_budget == 0.5
    with pytest.raises(ValueError, match=r"--idle-timeout must be zero or more \(got -1.0\)"):
        from_args(parser.parse_args(["--idle-timeout", "-1"]))
    with pytest.raises(ValueError, match=r"--login-timeout must be positive \(got 0.0\)"):
        from_args(parser.parse_args(["--login-timeout", "0"]))
    with pytest.raises(ValueError, match="limit max_sessions must not be negative"):
        ServerLimits(max_sessions=-1)
