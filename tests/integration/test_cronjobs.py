"""CarbonAwareCronJobs on the real local control plane, on a scaled clock.

The operator replays a trace (one operator hour is 2.5 s of wall time): dirty everywhere but
one clean half-hour per four-hour period, placed between two hours before and an hour and a
half after the period's nominal time, a different offset each period. A cron job runs every
four hours with a window of two hours each side, Forecast policy, half-hour runs on kwok
nodes. Over ten periods it must create exactly one run per period, each started inside its
window and not before its clean half-hour, and several of them before their nominal time.

Beside it, two cron jobs whose runs never finish (kwok completes their pods after ten
minutes of wall time), hourly: with concurrencyPolicy Forbid no second run is created while
the first is running; with Replace each period deletes the run before it and creates its own.
"""

from __future__ import annotations

import contextlib
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api import labels

from .operatorproc import (
    OperatorProcess,
    ScaledClock,
    caj,
    cron_job,
    free_port,
    long_job_template,
    operator_env,
    scrape_metrics,
    ticked,
    wait_for,
    when,
)

pytestmark = pytest.mark.integration

SCALE = 1440.0  # operator seconds per wall second: an hour in 2.5 s
TICK_SECONDS = 0.5  # 12 operator minutes
SLOT = timedelta(minutes=30)
PERIOD = timedelta(hours=4)
MARGIN = timedelta(hours=2)
PERIODS = 10  # watched
PLANNED = 30  # periods with a clean slot in the trace, from the operator's start
CLEAN, DIRTY = 40, 400
# Where each period's clean half-hour starts, from its nominal time (cycled).
OFFSETS = [timedelta(minutes=m) for m in (-120, 60, -60, 90, -30, 0, -90, 30)]
RUN = timedelta(minutes=30)
HORIZON = ("carbonaware_decision_horizon_seconds", ())


def grid_times(origin: datetime) -> list[datetime]:
    """Nominal times on the four-hour grid (UTC) from the operator's start: the trace has a
    clean slot for each."""
    first = origin.replace(hour=0, minute=0, second=0, microsecond=0)
    return [first + i * PERIOD for i in range(PLANNED + 6)]


def clean_slot(nominals: list[datetime], nominal: datetime) -> datetime:
    return nominal + OFFSETS[nominals.index(nominal) % len(OFFSETS)]


def write_trace(path: Path, origin: datetime, nominals: list[datetime]) -> Path:
    """Fifteen days of dirty history, then DIRTY except each period's clean slot, the
    forecast equal to the actual (the plan is known), as the shipped traces' columns."""
    clean = {clean_slot(nominals, nominal) for nominal in nominals}
    start = origin.replace(minute=0, second=0, microsecond=0) - timedelta(days=15)
    rows = ["Datetime (UTC),Actual Carbon Intensity (gCO2/kWh),Forecast Carbon Intensity "
            "(gCO2/kWh),Index"]  # fmt: skip
    while start < nominals[-1] + timedelta(days=2):
        value = CLEAN if start in clean else DIRTY
        rows.append(f"{start:%Y-%m-%dT%H:%MZ},{value},{value},moderate")
        start += SLOT
    path.write_text("\n".join(rows) + "\n")
    return path


def quick_run(schedule: dict[str, Any]) -> dict[str, Any]:
    return caj("template", schedule)


def runs(plane: Any, namespace: str, cron: str) -> list[dict[str, Any]]:
    listed = plane.kubectl_json("get", "caj", "-n", namespace, "-l", f"{labels.CRONJOB}={cron}")[
        "items"
    ]
    return list(listed)


def events_of(plane: Any, namespace: str, name: str) -> list[str]:
    listed = plane.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [event["reason"] for event in listed]


@pytest.fixture
def operator(crds: Any, namespace: str, tmp_path: Path) -> Any:
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SCALE)
    nominals = grid_times(clock.origin)
    port = free_port()
    env = operator_env(
        crds.kubeconfig,
        providers="trace",
        trace_path=write_trace(tmp_path / "trace.csv", clock.origin, nominals),
        trace_shift_to_now=False,
        default_region="GB",
        namespace=namespace,
        metrics_port=port,
        metrics_address="127.0.0.1",
        time_scale=SCALE,
        time_origin=clock.origin.isoformat(),
        tick_seconds=TICK_SECONDS,
    )
    process = OperatorProcess(env, tmp_path / "operator.log")
    process.start()
    try:
        wait_for(lambda: ticked(port), timeout=60, what="the operator's first tick")
        yield clock, nominals, process, port
    finally:
        process.stop()
        print(process.log()[-6000:])


def test_one_run_per_period_inside_its_window_and_the_policies_for_overlaps(
    crds: Any, namespace: str, operator: Any
) -> None:
    clock, grid, process, port = operator
    plane = crds
    forecast = {"policy": "Forecast", "expectedDurationSeconds": int(RUN.total_seconds())}
    margin = int(MARGIN.total_seconds())
    long_running = quick_run({"policy": "Immediate"})
    long_running["spec"]["jobTemplate"] = long_job_template()
    plane.apply(
        cron_job("grid", "0 */4 * * *", quick_run(forecast), windowBeforeSeconds=margin,
                 windowAfterSeconds=margin, successfulJobsHistoryLimit=PLANNED),
        namespace=namespace,
    )  # fmt: skip
    # The periods watched: the first ten whose windows open after the cron job exists.
    created = clock.now() + timedelta(minutes=30)
    nominals = [nominal for nominal in grid if nominal - MARGIN > created][:PERIODS]
    for name, policy in (("forbid", "Forbid"), ("replace", "Replace")):
        plane.apply(
            cron_job(name, "0 * * * *", copy.deepcopy(long_running), concurrencyPolicy=policy),
            namespace=namespace,
        )

    # Wait until the last watched period's window has closed and its run has started.
    last_close = nominals[-1] + MARGIN
    wait_seconds = clock.wall_seconds(last_close - clock.now()) + 60

    # The operator releases a run whose planned start comes before its next decision: up to
    # its decision horizon early (two ticks, more when ticks came late; it exports it).
    horizon = timedelta(0)

    def all_started() -> list[dict[str, Any]] | None:
        nonlocal horizon
        with contextlib.suppress(OSError):
            seconds = scrape_metrics(port, timeout=5).get(HORIZON, 0.0)
            horizon = max(horizon, timedelta(seconds=seconds))
        found = runs(plane, namespace, "grid")
        mine = [r for r in found if when(r["metadata"]["annotations"][labels.NOMINAL_TIME])
                in nominals]  # fmt: skip
        started = [r for r in mine if (r.get("status") or {}).get("releaseTime")]
        return mine if len(started) == len(nominals) and clock.now() > last_close else None

    mine = wait_for(all_started, timeout=wait_seconds, what="a started run for every period")
    # Exactly one run per period.
    by_nominal = {when(r["metadata"]["annotations"][labels.NOMINAL_TIME]): r for r in mine}
    assert sorted(by_nominal) == nominals
    assert len(mine) == len(nominals)
    released = {n: when(run["status"]["releaseTime"]) for n, run in by_nominal.items()}
    print(f"largest decision horizon: {horizon}")
    for nominal in nominals:
        slot = clean_slot(grid, nominal)
        print(f"{nominal:%d %H:%M}: clean {slot:%H:%M}, released {released[nominal]:%H:%M:%S}")
    early = 0
    for nominal, run in sorted(by_nominal.items()):
        start = released[nominal]  # operator time
        slot = clean_slot(grid, nominal)
        # Never outside the window; planned for its clean half-hour, so released no earlier
        # than the decision horizon before it.
        assert nominal - MARGIN <= start <= nominal + MARGIN, (nominal, start)
        assert start >= slot - horizon, (nominal, slot, start, horizon)
        assert run["metadata"]["ownerReferences"][0]["kind"] == "CarbonAwareCronJob"
        early += start < nominal
    # Half the offsets put the clean slot 30 minutes or more before the nominal time.
    assert early >= 3, early

    status = plane.kubectl_json("get", "cacj", "grid", "-n", namespace)["status"]
    assert when(status["lastScheduleTime"]) >= nominals[-1]
    assert when(status["nextScheduleTime"]) > when(status["lastScheduleTime"])
    assert "RunCreated" in events_of(plane, namespace, "grid")

    # Forbid: the first run still runs (its pod completes after ten wall minutes), so every
    # later period waited; Replace: each period deleted the run before it. Both are suspended
    # first, so that the runs and the status are read at rest (Replace changes them hourly).
    for name in ("forbid", "replace"):
        plane.kubectl("patch", "cacj", name, "-n", namespace, "--type=merge",
                      "-p", '{"spec": {"suspend": true}}')  # fmt: skip
    forbid = runs(plane, namespace, "forbid")
    assert len(forbid) == 1, [r["metadata"]["name"] for r in forbid]
    assert "JobAlreadyActive" in events_of(plane, namespace, "forbid")

    def replace_at_rest() -> tuple[list[str], list[str]] | None:
        names = [r["metadata"]["name"] for r in runs(plane, namespace, "replace")
                 if not r["metadata"].get("deletionTimestamp")]  # fmt: skip
        status = plane.kubectl_json("get", "cacj", "replace", "-n", namespace)["status"]
        active = [a["name"] for a in status.get("active") or []]
        return (names, active) if names == active else None

    names, _ = wait_for(replace_at_rest, timeout=30, what="the Replace cron job at rest")
    assert len(names) == 1, names
    replaced = events_of(plane, namespace, "replace").count("RunReplaced")
    assert replaced >= PERIODS  # hourly over ten four-hour periods, each replaced
    assert "Traceback" not in process.log()
