"""The CarbonAwareCronJob model: what it accepts, and messages that say what must change."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from carbonaware.api.cronjob import CarbonAwareCronJobSpec, ConcurrencyPolicy

RUN = {
    "schedule": {"policy": "Forecast", "expectedDurationSeconds": 3600},
    "jobTemplate": {
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}
            }
        }
    },
}


def spec(**fields: Any) -> dict[str, Any]:
    return {"schedule": "0 2 * * *", "jobTemplate": {"spec": RUN}, **fields}


def test_defaults_follow_cronjob() -> None:
    parsed = CarbonAwareCronJobSpec.model_validate(spec())
    assert parsed.concurrency_policy is ConcurrencyPolicy.ALLOW
    assert (parsed.successful_jobs_history_limit, parsed.failed_jobs_history_limit) == (3, 1)
    assert (parsed.window_before_seconds, parsed.window_after_seconds) == (0, 0)
    assert parsed.starting_deadline_seconds is None
    assert not parsed.suspend
    assert str(parsed.zone()) == "UTC"


@pytest.mark.parametrize(
    ("schedule", "kept"),
    [("0 2 * * *", "0 2 * * *"), ("  */15   * * * 1-5 ", "*/15 * * * 1-5"), ("@Daily", "@daily")],
)
def test_schedules_cronjob_accepts(schedule: str, kept: str) -> None:
    assert CarbonAwareCronJobSpec.model_validate(spec(schedule=schedule)).schedule == kept


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 2 * *", "five fields"),
        ("0 0 2 * * *", "five fields"),  # seconds are not a CronJob field
        ("61 2 * * *", "five fields"),
        ("@every 1h", "five fields"),
        ("CRON_TZ=Europe/London 0 2 * * *", "set spec.timeZone instead"),
    ],
)
def test_bad_schedules_say_what_is_accepted(schedule: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CarbonAwareCronJobSpec.model_validate(spec(schedule=schedule))


def test_time_zone_must_be_an_iana_name() -> None:
    assert str(CarbonAwareCronJobSpec.model_validate(spec(timeZone="Europe/London")).zone()) == (
        "Europe/London"
    )
    with pytest.raises(ValidationError, match="not an IANA time zone name"):
        CarbonAwareCronJobSpec.model_validate(spec(timeZone="Mars/Olympus"))


@pytest.mark.parametrize("field", ["deadlineTime", "maxDelaySeconds"])
def test_the_window_comes_from_the_cron_job_not_the_template(field: str) -> None:
    value = "2030-01-01T00:00:00Z" if field == "deadlineTime" else 600
    run = {**RUN, "schedule": {**RUN["schedule"], field: value}}
    with pytest.raises(ValidationError, match="windowAfterSeconds"):
        CarbonAwareCronJobSpec.model_validate(spec(jobTemplate={"spec": run}))


def test_the_template_is_checked_as_a_carbonawarejob() -> None:
    run = {**RUN, "schedule": {"policy": "Threshold"}}
    with pytest.raises(ValidationError, match="Threshold needs maxIntensity"):
        CarbonAwareCronJobSpec.model_validate(spec(jobTemplate={"spec": run}))
