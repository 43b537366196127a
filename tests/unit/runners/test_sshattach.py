"""The outcome a call reports from what the server recorded: the server's clock corrected,
who started the run, and the errors for runs without an outcome."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carbonaware.errors import RunLostError, RunnerError
from carbonaware.runners.procstat import CpuTimes, HostSample
from carbonaware.runners.sshattach import RunProgress, summarise
from carbonaware.runners.sshscript import ControlLine

SERVER_START = 1_700_000_000.25


def ended(**overrides: object) -> ControlLine:
    values: dict[str, object] = {
        "kind": "end",
        "exit_code": 0,
        "start_epoch": SERVER_START,
        "end_epoch": SERVER_START + 90.5,
        "cpu_core_seconds": 12.0,
    }
    values.update(overrides)
    return ControlLine(**values)  # type: ignore[arg-type]


def progress(final: ControlLine, **overrides: object) -> RunProgress:
    state = RunProgress(run_id="run-1", token="mine", final=final, claimed_here=True)
    for name, value in overrides.items():
        setattr(state, name, value)
    return state


def test_times_come_from_the_server_corrected_by_the_clock_offset() -> None:
    # The server's clock is an hour ahead of the caller's.
    summary = summarise(progress(ended(), clock_offset=3600.0))

    assert summary.start_time == datetime.fromtimestamp(SERVER_START - 3600, UTC)
    assert summary.end_time == datetime.fromtimestamp(SERVER_START - 3600 + 90.5, UTC)
    assert summary.duration_seconds == pytest.approx(90.5)
    assert summary.cpu_core_seconds == 12.0
    assert summary.exit_code == 0
    assert summary.attached is False


def test_a_call_that_did_not_claim_the_run_reports_attached() -> None:
    assert summarise(progress(ended(), claimed_here=False)).attached is True
    assert summarise(progress(ended(), claimed_here=None)).attached is True


def test_timed_out_comes_from_the_record_or_the_client_backstop() -> None:
    assert summarise(progress(ended(timed_out=True, exit_code=143))).timed_out
    assert summarise(progress(ended(exit_code=137), backstop_fired=True)).timed_out
    assert not summarise(progress(ended())).timed_out


def test_host_samples_of_the_run_are_aggregated() -> None:
    samples = [
        HostSample(CpuTimes(busy_ticks=100, total_ticks=1000), 8 * 2**30, 6 * 2**30),
        HostSample(CpuTimes(busy_ticks=600, total_ticks=2000), 8 * 2**30, 4 * 2**30),
    ]

    summary = summarise(progress(ended(), samples=samples, vcpus=4))

    assert summary.samples == 2
    assert summary.vcpus == 4
    assert summary.host_utilisation == pytest.approx(0.5)
    assert summary.memory_used_bytes_max == 4 * 2**30


def test_runs_without_an_outcome_raise() -> None:
    with pytest.raises(RunLostError, match="server restarted"):
        summarise(progress(ControlLine(kind="lost", epoch=1.0, text="the server restarted")))
    with pytest.raises(RunnerError, match="could not prepare"):
        summarise(progress(ControlLine(kind="error", text="HOME is not set")))
    with pytest.raises(RunnerError, match="stopped before it began"):
        summarise(progress(ended(exit_code=None)))
    with pytest.raises(RunnerError):
        summarise(RunProgress(run_id="run-1", token="t"))
