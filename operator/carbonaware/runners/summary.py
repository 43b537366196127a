"""The SSH runner's result as compact JSON, and strict parsers for it.

The runner pod writes one of two records to its termination message (``/dev/termination-log``,
which the kubelet truncates at 4096 bytes): a :class:`RunSummary` when the job ran, or a
:class:`RunFailure` when it could not be run (unreachable, host key, auth...). The operator
reads it back from the pod status with :func:`parse_summary` / :func:`parse_failure`, which
raise :class:`~carbonaware.errors.RunnerError` and nothing else for malformed text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carbonaware.errors import RunnerError

MAX_TERMINATION_MESSAGE_BYTES = 4096
_MAX_FAILURE_MESSAGE_CHARS = 3000
_MAX_EXIT_CODE = 255

DETACHED = "Detached"
"""The failure reason of a runner that let go of a run still going on the server."""

FAILURE_REASONS = frozenset(
    {
        DETACHED,
        "Unreachable",
        "AuthFailed",
        "HostKeyMismatch",
        "ConnectionLost",
        "RunLost",
        "RunnerError",
        "InvalidSpec",
    }
)

_SUMMARY_KEYS = frozenset(
    {
        "exitCode",
        "timedOut",
        "durationSeconds",
        "cpuCoreSeconds",
        "vcpus",
        "hostUtilisation",
        "memoryUsedBytesMean",
        "memoryUsedBytesMax",
        "memoryTotalBytes",
        "samples",
        "startTime",
        "endTime",
        "attached",
    }
)


@dataclass(frozen=True)
class RunSummary:
    """What one SSH run did.

    ``exit_code`` is the remote exit status (None when the remote side ended without one);
    ``timed_out`` is True when the job was stopped at its timeout. ``cpu_core_seconds``
    is the CPU time (user + system) of the job's own processes, None if it could not be read.
    ``host_utilisation`` is the server's mean busy fraction (0..1) over the part of the run a
    caller watched, from ``/proc/stat``; memory figures come from ``/proc/meminfo`` samples.
    ``start_time``/``end_time``/``duration_seconds`` come from the server's own clock,
    corrected by its offset from the caller's clock measured when the caller attached, so a
    caller that attaches late still reports when the run really ran. ``attached`` is True
    when this call attached to a run that an earlier call started.
    """

    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    cpu_core_seconds: float | None
    vcpus: int | None
    host_utilisation: float | None
    memory_used_bytes_mean: int | None
    memory_used_bytes_max: int | None
    memory_total_bytes: int | None
    samples: int
    start_time: datetime
    end_time: datetime
    attached: bool = False

    @property
    def succeeded(self) -> bool:
        return not self.timed_out and self.exit_code == 0

    def to_json(self) -> str:
        """Compact JSON, well under :data:`MAX_TERMINATION_MESSAGE_BYTES`."""
        document: dict[str, Any] = {
            "exitCode": self.exit_code,
            "timedOut": self.timed_out,
            "durationSeconds": round(self.duration_seconds, 3),
            "cpuCoreSeconds": (
                None if self.cpu_core_seconds is None else round(self.cpu_core_seconds, 3)
            ),
            "vcpus": self.vcpus,
            "hostUtilisation": (
                None if self.host_utilisation is None else round(self.host_utilisation, 4)
            ),
            "memoryUsedBytesMean": self.memory_used_bytes_mean,
            "memoryUsedBytesMax": self.memory_used_bytes_max,
            "memoryTotalBytes": self.memory_total_bytes,
            "samples": self.samples,
            "startTime": _format_time(self.start_time),
            "endTime": _format_time(self.end_time),
            "attached": self.attached,
        }
        return json.dumps(document, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class RunFailure:
    """Why the runner could not run the job: a CamelCase ``reason`` and an actionable message."""

    reason: str
    message: str

    def to_json(self) -> str:
        """Compact JSON of at most :data:`MAX_TERMINATION_MESSAGE_BYTES` (message shortened)."""
        message = self.message.encode("utf-8", errors="replace").decode("utf-8")
        message = message[:_MAX_FAILURE_MESSAGE_CHARS]
        while True:
            text = json.dumps(
                {"reason": self.reason, "message": message},
                separators=(",", ":"),
                ensure_ascii=False,
            )
            excess = len(text.encode("utf-8")) - MAX_TERMINATION_MESSAGE_BYTES
            if excess <= 0:
                return text
            # One character takes at most 6 bytes in JSON (a \uXXXX escape).
            message = message[: len(message) - max(1, excess // 6)]


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _load_object(text: str | bytes, what: str) -> dict[str, Any]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise RunnerError(f"{what} is not UTF-8 text") from None
    if not isinstance(text, str):
        raise RunnerError(f"{what} must be text")
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_TERMINATION_MESSAGE_BYTES:
        raise RunnerError(f"{what} is longer than {MAX_TERMINATION_MESSAGE_BYTES} bytes")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise RunnerError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise RunnerError(f"{what} must be a JSON object")
    return document


def _optional_int(
    document: dict[str, Any], key: str, minimum: int, maximum: int | None
) -> int | None:
    value = document[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunnerError(f"run summary {key} must be an integer or null")
    if value < minimum or (maximum is not None and value > maximum):
        raise RunnerError(f"run summary {key} is out of range")
    return int(value)


def _optional_number(
    document: dict[str, Any], key: str, minimum: float, maximum: float | None
) -> float | None:
    value = document[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RunnerError(f"run summary {key} must be a number or null")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (maximum is not None and number > maximum):
        raise RunnerError(f"run summary {key} is out of range")
    return number


def _time(document: dict[str, Any], key: str) -> datetime:
    value = document[key]
    if not isinstance(value, str):
        raise RunnerError(f"run summary {key} must be an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RunnerError(f"run summary {key} must be an RFC 3339 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RunnerError(f"run summary {key} must carry a time zone")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise RunnerError(f"run summary {key} is out of range") from None


def parse_summary(text: str | bytes) -> RunSummary:
    """Parse a runner termination message into a :class:`RunSummary`.

    Strict: unknown or missing keys, wrong types, NaN/infinite or negative numbers, bad times
    and over-long text all raise :class:`RunnerError`.
    """
    document = _load_object(text, "run summary")
    keys = set(document)
    if keys != _SUMMARY_KEYS:
        missing = sorted(_SUMMARY_KEYS - keys)
        unknown = sorted(keys - _SUMMARY_KEYS)
        raise RunnerError(
            f"run summary keys do not match: missing {missing[:5]}, unknown {len(unknown)}"
        )
    timed_out = document["timedOut"]
    if not isinstance(timed_out, bool):
        raise RunnerError("run summary timedOut must be true or false")
    attached = document["attached"]
    if not isinstance(attached, bool):
        raise RunnerError("run summary attached must be true or false")
    duration = _optional_number(document, "durationSeconds", 0.0, None)
    if duration is None:
        raise RunnerError("run summary durationSeconds must be a number")
    samples = _optional_int(document, "samples", 0, None)
    if samples is None:
        raise RunnerError("run summary samples must be an integer")
    start_time = _time(document, "startTime")
    end_time = _time(document, "endTime")
    if end_time < start_time:
        raise RunnerError("run summary endTime is before startTime")
    return RunSummary(
        exit_code=_optional_int(document, "exitCode", 0, _MAX_EXIT_CODE),
        timed_out=timed_out,
        duration_seconds=duration,
        cpu_core_seconds=_optional_number(document, "cpuCoreSeconds", 0.0, None),
        vcpus=_optional_int(document, "vcpus", 1, None),
        host_utilisation=_optional_number(document, "hostUtilisation", 0.0, 1.0),
        memory_used_bytes_mean=_optional_int(document, "memoryUsedBytesMean", 0, None),
        memory_used_bytes_max=_optional_int(document, "memoryUsedBytesMax", 0, None),
        memory_total_bytes=_optional_int(document, "memoryTotalBytes", 0, None),
        samples=samples,
        start_time=start_time,
        end_time=end_time,
        attached=attached,
    )


def parse_failure(text: str | bytes) -> RunFailure:
    """Parse a runner failure record (``{"reason": ..., "message": ...}``); strict like
    :func:`parse_summary`."""
    document = _load_object(text, "runner failure record")
    if set(document) != {"reason", "message"}:
        raise RunnerError("runner failure record must have exactly reason and message")
    reason, message = document["reason"], document["message"]
    if not isinstance(reason, str) or reason not in FAILURE_REASONS:
        raise RunnerError("runner failure record has an unknown reason")
    if not isinstance(message, str):
        raise RunnerError("runner failure record message must be text")
    return RunFailure(reason=reason, message=message)
