"""The pure parts of SSH runs: the final condition of a run and what a runner pod reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carbonaware.api.conditions import ConditionType, Reason
from carbonaware.handlers.sshoutcome import failure_reason, interrupted, outcome, pod_result
from carbonaware.runners.summary import DETACHED, RunFailure, RunSummary

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def summary(*, exit_code: int | None = 0, timed_out: bool = False) -> RunSummary:
    return RunSummary(
        exit_code=exit_code,
        timed_out=timed_out,
        duration_seconds=12.0,
        cpu_core_seconds=3.5,
        vcpus=4,
        host_utilisation=0.2,
        memory_used_bytes_mean=1 << 30,
        memory_used_bytes_max=1 << 31,
        memory_total_bytes=1 << 33,
        samples=3,
        start_time=START,
        end_time=START + timedelta(seconds=12),
    )


def finished_pod(message: str | None) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": 0, "reason": "Completed"}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"name": "train-ssh"},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": terminated}}],
        },
    }


def test_outcome_of_a_run_that_exited_zero_is_complete() -> None:
    assert outcome(summary(), None) == (
        ConditionType.COMPLETE,
        Reason.SUCCEEDED,
        "The script exited with 0.",
    )


@pytest.mark.parametrize(
    ("run", "reason", "text"),
    [
        (summary(exit_code=3), Reason.JOB_FAILED, "exited with 3"),
        (summary(exit_code=None), Reason.JOB_FAILED, "no exit status"),
        (summary(exit_code=None, timed_out=True), Reason.TIMED_OUT, "timeoutSeconds (12 s)"),
        (summary(exit_code=0, timed_out=True), Reason.TIMED_OUT, "timeoutSeconds"),
    ],
)
def test_outcome_of_a_run_that_failed_names_why(run: RunSummary, reason: Reason, text: str) -> None:
    type_, got, message = outcome(run, None)
    assert type_ is ConditionType.FAILED
    assert got is reason
    assert text in message


def test_outcome_without_a_summary_uses_the_failure() -> None:
    failure = (Reason.HOST_KEY_MISMATCH, "the host key of root@h:22 is not trusted")
    assert outcome(None, failure) == (ConditionType.FAILED, *failure)
    assert outcome(None, None)[1] is Reason.JOB_FAILED


def test_failure_reasons_map_to_condition_reasons() -> None:
    assert failure_reason("AuthFailed") is Reason.AUTH_FAILED
    assert failure_reason("Unreachable") is Reason.UNREACHABLE
    assert failure_reason("ConnectionLost") is Reason.JOB_FAILED
    assert failure_reason("TargetError") is Reason.JOB_FAILED


def test_pod_result_reads_a_run_summary() -> None:
    run = summary(exit_code=2)
    got, failure = pod_result(finished_pod(run.to_json()), "Failed")
    assert failure is None
    assert got == run


def test_pod_result_reads_a_failure_record() -> None:
    record = RunFailure("AuthFailed", "root@h:22 rejected public key authentication")
    assert pod_result(finished_pod(record.to_json()), "Failed") == (
        None,
        (Reason.AUTH_FAILED, record.message),
    )
    lost = RunFailure("ConnectionLost", "the connection was lost")
    assert pod_result(finished_pod(lost.to_json()), "Failed")[1] == (
        Reason.JOB_FAILED,
        lost.message,
    )


@pytest.mark.parametrize("message", [None, "", "not json", '{"exitCode": 0}'])
def test_pod_result_without_a_result_says_so(message: str | None) -> None:
    got, failure = pod_result(finished_pod(message), "Succeeded")
    assert got is None
    assert failure is not None
    assert failure[0] is Reason.JOB_FAILED
    assert "train-ssh ended Succeeded without a result" in failure[1]


def deleting(pod: dict[str, Any]) -> dict[str, Any]:
    return {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-05T12:00:00Z"}}


def test_a_pod_deleted_before_it_reported_is_interrupted_not_finished() -> None:
    assert interrupted(deleting(finished_pod(None)))
    assert interrupted(deleting(finished_pod("")))
    # A runner that was signalled let go of the run (it goes on on the server).
    detached = RunFailure(DETACHED, "the runner was stopped before the job finished")
    assert interrupted(deleting(finished_pod(detached.to_json())))


def test_a_detached_runner_pod_not_being_deleted_is_a_failure_not_an_interruption() -> None:
    # activeDeadlineSeconds stops the container without deleting the pod: nothing attaches.
    detached = RunFailure(DETACHED, "the runner was stopped before the job finished")
    pod = finished_pod(detached.to_json())
    assert not interrupted(pod)
    assert pod_result(pod, "Failed") == (None, (Reason.JOB_FAILED, detached.message))


def test_a_pod_that_reported_or_is_not_being_deleted_is_not_interrupted() -> None:
    record = RunFailure("AuthFailed", "root@h:22 rejected public key authentication")
    assert not interrupted(deleting(finished_pod(summary().to_json())))
    assert not interrupted(deleting(finished_pod(record.to_json())))
    assert not interrupted(finished_pod(None))
