"""A hung API server: every call times out, the loop resumes, and liveness tells the difference.

The real kube-apiserver is frozen with SIGSTOP: its socket still accepts connections, so
calls hang instead of failing, as with a wedged server or a half-dead network path. The
operator's refresh loop must then stop completing ticks for no longer than the request
timeout, its liveness probe (``/healthz``) must fail while it is stuck for longer than
``liveness_ticks`` ticks, and both must recover once the server answers again. The
lateness and loop metrics are read from ``/metrics`` afterwards.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .grid import Intensity, grid, operator_for
from .operatorproc import (
    QUICK_JOB_TEMPLATE,
    OperatorProcess,
    caj,
    cron_job,
    free_port,
    long_job_template,
    scrape_metrics,
    status_of,
    wait_for,
)
from .ukapi import UkApiServer

pytestmark = pytest.mark.integration
__all__ = ["grid"]

REQUEST_TIMEOUT = 8


def healthy(port: int) -> bool | None:
    """True for 200, False for an error status; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


@pytest.fixture
def watched(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> Iterator[tuple[OperatorProcess, int, int]]:
    health, metrics = free_port(), free_port()
    process = operator_for(
        crds,
        grid[1],
        tmp_path / "operator.log",
        namespace=namespace,
        tick_seconds=1,
        liveness_ticks=3,
        reconcile_seconds=1,
        kube_timeout_seconds=REQUEST_TIMEOUT,
        health_port=health,
        metrics_port=metrics,
    )
    process.start()
    wait_for(lambda: healthy(health), timeout=30, what="the liveness endpoint")
    yield process, health, metrics
    process.stop()
    print(process.log()[-20000:])


def test_a_hung_api_server_fails_liveness_until_it_answers_again(
    crds: Any, namespace: str, watched: tuple[OperatorProcess, int, int]
) -> None:
    process, health, metrics = watched
    # A cron job: every tick lists its runs (an API call that hangs with the API server), so
    # the loop is stuck. (The reconcile pass, which lists the running job's Job, runs beside
    # the ticks and no longer stalls them.)
    yearly = caj("yearly", {"policy": "Immediate"}, jobTemplate=QUICK_JOB_TEMPLATE)
    crds.apply(cron_job("yearly", "0 0 1 1 *", yearly), namespace=namespace)
    # A released job that keeps running.
    crds.apply(
        caj("running", {"policy": "Immediate"}, jobTemplate=long_job_template()),
        namespace=namespace,
    )
    wait_for(
        lambda: status_of(crds, "caj", namespace, "running").get("jobName"),
        timeout=30,
        what="the running job",
    )
    apiserver = crds.pids()["kube-apiserver"]
    os.kill(apiserver, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(
            lambda: healthy(health) is False,
            timeout=REQUEST_TIMEOUT + 15,
            interval=0.5,
            what="liveness to fail while the loop is stuck",
        )
        assert process.alive()
    finally:
        os.kill(apiserver, signal.SIGCONT)
    stuck_for = time.monotonic() - stopped
    wait_for(
        lambda: healthy(health),
        timeout=REQUEST_TIMEOUT * 3 + 30,
        interval=0.5,
        what="liveness to recover once the API server answers",
    )
    assert process.alive()
    assert stuck_for < REQUEST_TIMEOUT + 15

    # The loop goes on deciding: a job created now is released as before.
    crds.apply(
        caj("after", {"policy": "Immediate"}, jobTemplate=QUICK_JOB_TEMPLATE), namespace=namespace
    )
    wait_for(
        lambda: status_of(crds, "caj", namespace, "after").get("state") == "Succeeded",
        timeout=90,
        what="a job after the outage to succeed",
    )
    samples = scrape_metrics(metrics, timeout=10)
    last = samples[("carbonaware_loop_last_success_timestamp_seconds", ())]
    assert time.time() - last < 10
    late = [v for (name, _), v in samples.items() if name == "carbonaware_late_releases_total"]
    assert sum(late) == 0
    released = sum(
        v
        for (name, labels), v in samples.items()
        if name == "carbonaware_release_lateness_seconds_count"
    )
    assert released >= 2
