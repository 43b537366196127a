"""The run summary JSON: round trip, size, and a parser that only ever raises RunnerError."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonaware.errors import RunnerError
from carbonaware.runners.summary import (
    MAX_TERMINATION_MESSAGE_BYTES,
    RunFailure,
    RunSummary,
    parse_failure,
    parse_summary,
)

START = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def make_summary(**overrides: Any) -> RunSummary:
    values: dict[str, Any] = {
        "exit_code": 0,
        "timed_out": False,
        "duration_seconds": 12.5,
        "cpu_core_seconds": 20.25,
        "vcpus": 8,
        "host_utilisation": 0.4321,
        "memory_used_bytes_mean": 3_000_000_000,
        "memory_used_bytes_max": 3_500_000_000,
        "memory_total_bytes": 16 * 2**30,
        "samples": 7,
        "start_time": START,
        "end_time": START + timedelta(seconds=12.5),
    }
    values.update(overrides)
    return RunSummary(**values)


def valid_document() -> dict[str, Any]:
    return json.loads(make_summary().to_json())  # type: ignore[no-any-return]


def test_round_trip() -> None:
    summary = make_summary()

    assert parse_summary(summary.to_json()) == summary
    assert parse_summary(summary.to_json().encode()) == summary


def test_round_trip_with_unknowns_and_timeout() -> None:
    summary = make_summary(
        exit_code=None,
        timed_out=True,
        cpu_core_seconds=None,
        vcpus=None,
        host_utilisation=None,
        memory_used_bytes_mean=None,
        memory_used_bytes_max=None,
        memory_total_bytes=None,
        samples=0,
    )

    parsed = parse_summary(summary.to_json())

    assert parsed == summary
    assert not parsed.succeeded


def test_attached_round_trips_and_defaults_to_false() -> None:
    started = make_summary()
    attached = make_summary(attached=True)

    assert started.attached is False
    assert json.loads(started.to_json())["attached"] is False
    assert parse_summary(attached.to_json()) == attached
    assert parse_summary(attached.to_json()).attached is True


def test_json_is_compact_and_fits_the_termination_message() -> None:
    huge = make_summary(
        attached=True,
        duration_seconds=10.0**15,
        cpu_core_seconds=10.0**15,
        vcpus=10**9,
        memory_used_bytes_mean=2**62,
        memory_used_bytes_max=2**62,
        memory_total_bytes=2**62,
        samples=10**12,
    )
    text = huge.to_json()

    assert len(text.encode()) < 600 < MAX_TERMINATION_MESSAGE_BYTES
    assert " " not in text
    assert json.loads(text)["exitCode"] == 0


def test_times_are_rfc3339_utc() -> None:
    document = valid_document()

    assert document["startTime"] == "2024-05-01T12:00:00.123Z"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("exitCode", True),
        ("exitCode", 256),
        ("exitCode", -1),
        ("exitCode", 1.5),
        ("timedOut", 0),
        ("timedOut", None),
        ("durationSeconds", -1),
        ("durationSeconds", None),
        ("durationSeconds", "12"),
        ("cpuCoreSeconds", -0.5),
        ("vcpus", 0),
        ("hostUtilisation", 1.5),
        ("memoryUsedBytesMax", -3),
        ("samples", None),
        ("startTime", "2024-05-01T12:00:00"),
        ("startTime", "yesterday"),
        ("endTime", "2024-05-01T11:00:00Z"),
        ("attached", None),
        ("attached", 1),
        ("attached", "true"),
    ],
)
def test_rejects_bad_values(key: str, value: object) -> None:
    document = valid_document()
    document[key] = value

    with pytest.raises(RunnerError):
        parse_summary(json.dumps(document))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "[]",
        '"text"',
        "{",
        '{"exitCode": NaN}',
        '{"exitCode": Infinity}',
        "[" * 3000 + "]" * 3000,
        "x" * (MAX_TERMINATION_MESSAGE_BYTES + 1),
    ],
)
def test_rejects_malformed_text(text: str) -> None:
    with pytest.raises(RunnerError):
        parse_summary(text)


def test_rejects_non_finite_numbers_written_as_json_constants() -> None:
    text = make_summary().to_json().replace('"durationSeconds":12.5', '"durationSeconds":NaN')

    with pytest.raises(RunnerError):
        parse_summary(text)


def test_rejects_missing_and_unknown_keys() -> None:
    missing = valid_document()
    del missing["vcpus"]
    no_attached = valid_document()
    del no_attached["attached"]
    extra = valid_document() | {"surprise": 1}

    with pytest.raises(RunnerError):
        parse_summary(json.dumps(missing))
    with pytest.raises(RunnerError):
        parse_summary(json.dumps(no_attached))
    with pytest.raises(RunnerError):
        parse_summary(json.dumps(extra))


def test_rejects_invalid_utf8() -> None:
    with pytest.raises(RunnerError):
        parse_summary(b"\xff\xfe{}")


def test_failure_record_round_trip_and_strictness() -> None:
    failure = RunFailure("HostKeyMismatch", "add the key")
    lost = RunFailure("RunLost", "the server restarted")

    assert parse_failure(failure.to_json()) == failure
    assert parse_failure(lost.to_json()) == lost
    with pytest.raises(RunnerError):
        parse_failure('{"reason": "Whatever", "message": "x"}')
    with pytest.raises(RunnerError):
        parse_summary(failure.to_json())
    with pytest.raises(RunnerError):
        parse_failure(make_summary().to_json())


@pytest.mark.parametrize("character", ["a", "é", "\u0001", "\U0001f600", "\ud800"])
def test_failure_record_fits_the_termination_message(character: str) -> None:
    text = RunFailure("Unreachable", character * 10_000).to_json()

    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE_BYTES
    failure = parse_failure(text)
    assert failure.reason == "Unreachable"
    assert len(failure.message) > 500


def _parse_or_runner_error(text: str | bytes) -> RunSummary | None:
    try:
        return parse_summary(text)
    except RunnerError:
        return None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)


@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_summary_or_runner_error(text: str) -> None:
    result = _parse_or_runner_error(text)

    assert result is None or isinstance(result, RunSummary)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_summary_or_runner_error(data: bytes) -> None:
    result = _parse_or_runner_error(data)

    assert result is None or isinstance(result, RunSummary)


@given(json_values)
def test_arbitrary_json_gives_a_summary_or_runner_error(value: object) -> None:
    result = _parse_or_runner_error(json.dumps(value))

    assert result is None or isinstance(result, RunSummary)


@given(
    st.fixed_dictionaries(
        {key: json_values | st.just(value) for key, value in valid_document().items()}
    )
)
def test_summary_shaped_json_with_arbitrary_values(document: dict[str, Any]) -> None:
    result = _parse_or_runner_error(json.dumps(document))

    if result is not None:
        # Whatever got through is sane.
        assert result.duration_seconds >= 0
        assert result.exit_code is None or 0 <= result.exit_code <= 255
        assert result.host_utilisation is None or 0 <= result.host_utilisation <= 1
        assert result.end_time >= result.start_time


@given(
    exit_code=st.none() | st.integers(0, 255),
    timed_out=st.booleans(),
    duration=st.floats(0, 10**9),
    cpu=st.none() | st.floats(0, 10**9),
    utilisation=st.none() | st.floats(0, 1),
    memory=st.none() | st.integers(0, 2**60),
    attached=st.booleans(),
)
def test_any_real_summary_round_trips(
    exit_code: int | None,
    timed_out: bool,
    duration: float,
    cpu: float | None,
    utilisation: float | None,
    memory: int | None,
    attached: bool,
) -> None:
    summary = make_summary(
        exit_code=exit_code,
        timed_out=timed_out,
        duration_seconds=duration,
        cpu_core_seconds=cpu,
        host_utilisation=utilisation,
        memory_used_bytes_max=memory,
        attached=attached,
    )

    parsed = parse_summary(summary.to_json())

    assert parsed.exit_code == exit_code
    assert parsed.timed_out == timed_out
    assert parsed.attached == attached
    assert parsed.duration_seconds == pytest.approx(duration, abs=0.001)
    assert (parsed.cpu_core_seconds is None) == (cpu is None)
    assert parsed.memory_used_bytes_max == memory
