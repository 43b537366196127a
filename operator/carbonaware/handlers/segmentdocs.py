"""Status documents of interruptible runs: the first segment at release, the last at the end,
and the SCI summed over the segments (pure; ``handlers.segmented`` does the pausing)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from carbonaware.api import labels
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    Reason,
    format_time,
    set_condition,
)
from carbonaware.handlers.work import optional_time, parse_time
from carbonaware.sci.estimate import SciEstimate


def opened(status: dict[str, Any], now: datetime, reason: Reason, message: str) -> dict[str, Any]:
    """The status fields of a first run starting at ``now`` (the release's ``status``)."""
    conditions = set_condition(
        status.get("conditions") or [], type=ConditionType.RUNNING, status=ConditionStatus.TRUE,
        reason=reason, message=message, now=now, generation=status.get("observedGeneration"),
    )  # fmt: skip
    return {
        "conditions": conditions,
        "segments": [{"start": format_time(now)}],
        "workDoneSeconds": 0,
        "interruptions": 0,
    }


def closed_at_end(
    status: dict[str, Any],
    end: datetime,
    last: dict[str, Any] | None,
    run_start: datetime | None = None,
) -> dict[str, Any]:
    """``segments``, ``workDoneSeconds`` and ``interruptions`` once the run ended at ``end``:
    the open segment closed there with ``last`` (its run time and SCI share)."""
    segments = [dict(segment) for segment in status.get("segments") or []]
    if segments and segments[-1].get("end") is None:
        start = parse_time(segments[-1]["start"])
        segments[-1]["end"] = format_time(max(end, start))
        began = max(run_start or start, start)
        segments[-1].update(last or {})
        segments[-1]["workSeconds"] = round(max((end - began).total_seconds(), 0.0), 3)
    done = sum(float(s.get("workSeconds") or 0.0) for s in segments)
    return {
        "segments": segments,
        "workDoneSeconds": round(done, 3),
        "interruptions": max(len(segments) - 1, 0),
    }


def segment_annotations(doc: dict[str, Any]) -> dict[str, str]:
    """A plain Job's annotations for the ``segments``, ``workDoneSeconds`` and
    ``interruptions`` of ``doc`` (it has no status of ours)."""
    return {
        labels.SEGMENTS: json.dumps(doc["segments"], separators=(",", ":")),
        labels.WORK_DONE_SECONDS: f"{float(doc['workDoneSeconds']):g}",
        labels.INTERRUPTIONS: str(doc["interruptions"]),
    }


def segments_of(body: dict[str, Any], *, plain_job: bool) -> list[dict[str, Any]]:
    """A CarbonAwareJob's ``status.segments``, or a plain Job's segments annotation."""
    if not plain_job:
        return [dict(s) for s in (body.get("status") or {}).get("segments") or []]
    text = ((body.get("metadata") or {}).get("annotations") or {}).get(labels.SEGMENTS)
    try:
        found = json.loads(text) if text else []
    except ValueError:
        return []
    return [dict(s) for s in found if isinstance(s, dict)] if isinstance(found, list) else []


def closed_done_seconds(status: dict[str, Any]) -> float:
    """Run time of the closed segments of ``status``."""
    return sum(
        float(s.get("workSeconds") or 0) for s in status.get("segments") or [] if s.get("end")
    )


def summed_estimate(
    last: SciEstimate, earlier: list[dict[str, Any]], quantity: float
) -> SciEstimate:
    """The last segment's estimate plus the shares of the segments that paused before it."""
    if not earlier:
        return last

    def total(key: str, value: float) -> float:
        return value + sum(float(s[key]) for s in earlier if s.get(key) is not None)

    operational = total("operationalGrams", last.operational_grams)
    embodied = total("embodiedGrams", last.embodied_grams)
    avoided = last.avoided_grams
    if avoided is not None:
        avoided = total("avoidedGrams", avoided)
    return dataclasses.replace(
        last,
        energy_kwh=total("energyKWh", last.energy_kwh),
        cpu_kwh=total("cpuKWh", last.cpu_kwh),
        memory_kwh=total("memoryKWh", last.memory_kwh),
        gpu_kwh=None if last.gpu_kwh is None else total("gpuKWh", last.gpu_kwh),
        operational_grams=operational,
        embodied_grams=embodied,
        total_grams=operational + embodied,
        per_unit_grams=(operational + embodied) / quantity,
        avoided_grams=avoided,
        cpu_core_seconds=total("cpuCoreSeconds", last.cpu_core_seconds),
    )


def segment_share(estimate: SciEstimate, run_mean: float | None) -> dict[str, Any]:
    """A segment's share of the SCI, as ``status.segments[]`` records it."""
    share: dict[str, Any] = {
        "cpuCoreSeconds": round(estimate.cpu_core_seconds, 3),
        "energyKWh": estimate.energy_kwh,
        "cpuKWh": estimate.cpu_kwh,
        "memoryKWh": estimate.memory_kwh,
        "operationalGrams": round(estimate.operational_grams, 4),
        "embodiedGrams": round(estimate.embodied_grams, 4),
    }
    if estimate.avoided_grams is not None:
        share["avoidedGrams"] = round(estimate.avoided_grams, 4)
    if estimate.gpu_kwh is not None:
        share["gpuKWh"] = estimate.gpu_kwh
    if run_mean is not None:
        share["meanIntensity"] = round(run_mean, 2)
    return share


def container_start(pod: dict[str, Any]) -> datetime | None:
    """When the pod's first container started running (or ran, if it has ended)."""
    starts = []
    for state in (pod.get("status") or {}).get("containerStatuses") or []:
        for phase in ("running", "terminated"):
            started = optional_time(((state.get("state") or {}).get(phase) or {}).get("startedAt"))
            if started is not None:
                starts.append(started)
    return min(starts) if starts else None
