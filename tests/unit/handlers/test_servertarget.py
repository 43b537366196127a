"""The HostKeyChecked condition of a ServerTarget probe."""

from __future__ import annotations

from carbonaware.api.conditions import ConditionStatus, Reason
from carbonaware.api.servertarget import HostKeyPolicy
from carbonaware.handlers.servertarget import host_key_condition


def test_accept_any_is_a_warning_whatever_the_probe_saw() -> None:
    for seen in (Reason.CONNECTED, Reason.UNREACHABLE):
        status, reason, message = host_key_condition(HostKeyPolicy.ACCEPT_ANY, seen)
        assert status is ConditionStatus.FALSE
        assert reason is Reason.HOST_KEY_CHECK_DISABLED
        assert "man-in-the-middle" in message


def test_strict_checking_says_what_the_probe_saw() -> None:
    status, reason, _ = host_key_condition(HostKeyPolicy.STRICT, Reason.CONNECTED)
    assert (status, reason) == (ConditionStatus.TRUE, Reason.HOST_KEY_VERIFIED)
    status, reason, message = host_key_condition(HostKeyPolicy.STRICT, Reason.HOST_KEY_MISMATCH)
    assert (status, reason) == (ConditionStatus.TRUE, Reason.HOST_KEY_MISMATCH)
    assert "did not match" in message
