"""The manifests in examples/ are valid for the API models and tell the story they claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import CarbonAwareJobSpec, SchedulePolicy
from carbonaware.api.cronjob import CarbonAwareCronJobSpec, ConcurrencyPolicy
from carbonaware.api.policy import CarbonAwarePolicySpec, NamedPolicy, PolicyMode, admission_for
from carbonaware.api.servertarget import HostKeyPolicy, ServerTargetSpec
from carbonaware.handlers.work import schedule_from_annotations
from carbonaware.scheduling.cron import CronSchedule

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
JOB_FILES = sorted((EXAMPLES / "jobs").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def carbonawarejobs() -> dict[str, CarbonAwareJobSpec]:
    return {
        load(path)["metadata"]["name"]: CarbonAwareJobSpec.model_validate(load(path)["spec"])
        for path in JOB_FILES
        if load(path)["kind"] == "CarbonAwareJob"
    }


def test_every_job_file_is_a_named_carbonawarejob_or_managed_job() -> None:
    assert len(JOB_FILES) == 8
    for path in JOB_FILES:
        document = load(path)
        assert document["metadata"]["name"] == path.stem
        assert "namespace" not in document["metadata"], "the demo chooses the namespace"
        assert (document["apiVersion"], document["kind"]) in (
            ("carbonaware.io/v1alpha1", "CarbonAwareJob"),
            ("batch/v1", "Job"),
        )


def test_the_policies_cover_every_case_the_demo_shows() -> None:
    jobs = carbonawarejobs()
    policies = {name: spec.schedule.policy for name, spec in jobs.items()}
    assert policies["forecast-24h-training"] is SchedulePolicy.FORECAST
    assert jobs["forecast-24h-training"].schedule.max_delay_seconds == 86400
    assert jobs["forecast-60s-etl"].schedule.max_delay_seconds == 60
    assert policies["immediate-report"] is SchedulePolicy.IMMEDIATE
    for name in ("threshold-met-reindex", "threshold-low-backfill"):
        assert policies[name] is SchedulePolicy.THRESHOLD
        assert jobs[name].schedule.max_intensity is not None


def test_the_ssh_jobs_share_one_target_in_priority_order() -> None:
    jobs = carbonawarejobs()
    first, second = jobs["ssh-compress-logs"], jobs["ssh-cleanup-archives"]
    assert first.ssh is not None
    assert second.ssh is not None
    assert first.ssh.target_ref.name == second.ssh.target_ref.name == "company-server"
    assert first.priority > second.priority
    for spec in (first, second):
        assert any(item.name == "DATA_DIR" for item in spec.ssh.env)  # type: ignore[union-attr]


def test_the_servertarget_checks_host_keys_and_describes_its_hardware() -> None:
    document = load(EXAMPLES / "servertarget.yaml")
    assert document["metadata"]["name"] == "company-server"
    spec = ServerTargetSpec.model_validate(document["spec"])
    assert spec.host_key_policy is HostKeyPolicy.STRICT
    assert spec.known_hosts is not None
    assert f"[{spec.host}]:{spec.port} " in spec.known_hosts
    assert spec.max_concurrent == 1
    assert spec.hardware is not None
    assert spec.hardware.vcpus > 0


@pytest.mark.parametrize("path", [p for p in JOB_FILES if load(p)["kind"] == "Job"])
def test_the_plain_job_is_suspended_managed_and_its_annotations_parse(path: Path) -> None:
    document = load(path)
    assert document["spec"]["suspend"] is True
    assert document["metadata"]["labels"][labels.MANAGED] == "true"
    schedule = schedule_from_annotations(document["metadata"]["annotations"])
    assert schedule.policy is SchedulePolicy.FORECAST
    assert schedule.max_delay_seconds == 43200


def test_the_interruptible_example_checkpoints_on_sigterm_to_a_claim_it_declares() -> None:
    claim, job = yaml.safe_load_all(
        (EXAMPLES / "interruptible" / "checkpointing-job.yaml").read_text()
    )
    spec = CarbonAwareJobSpec.model_validate(job["spec"])
    assert spec.schedule.interruptible is not None
    assert spec.schedule.interruptible.min_run_seconds == 3600
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "trap" in container["command"][-1]
    assert "TERM" in container["command"][-1]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_the_cron_job_example_is_valid_and_says_what_it_does() -> None:
    (path,) = sorted((EXAMPLES / "cronjobs").glob("*.yaml"))
    document = load(path)
    assert (document["apiVersion"], document["kind"]) == (
        "carbonaware.io/v1alpha1",
        "CarbonAwareCronJob",
    )
    spec = CarbonAwareCronJobSpec.model_validate(document["spec"])
    schedule = CronSchedule(
        spec.schedule,
        spec.zone(),
        before=timedelta(seconds=spec.window_before_seconds),
        after=timedelta(seconds=spec.window_after_seconds),
    )
    # "at 23:00 ... whose latest start is 06:00" (London time, winter and summer alike)
    for moment in (datetime(2026, 1, 10, 12, tzinfo=UTC), datetime(2026, 7, 10, 12, tzinfo=UTC)):
        opens, closes = schedule.window(schedule.next_nominal(moment))
        assert opens.astimezone(spec.zone()).hour == 23
        assert closes.astimezone(spec.zone()).hour == 6
    assert spec.concurrency_policy is ConcurrencyPolicy.FORBID
    assert spec.job_template.spec.schedule.policy is SchedulePolicy.FORECAST


def test_the_policy_example_watches_batch_jobs_before_holding_them() -> None:
    document = load(EXAMPLES / "policies" / "batch-shadow.yaml")
    assert (document["kind"], "namespace" in document["metadata"]) == ("CarbonAwarePolicy", False)
    spec = CarbonAwarePolicySpec.model_validate(document["spec"])
    assert spec.mode is PolicyMode.SHADOW
    assert spec.schedule.max_delay_seconds == 6 * 3600
    assert spec.governs({"tier": "batch"})
    assert not spec.governs({"tier": "web"})
    named = NamedPolicy("batch-shadow", "t", spec)
    job = {"metadata": {"labels": {"tier": "batch"}}, "spec": {}}
    admission = admission_for(job, [named])
    assert admission is not None
    assert admission.suspend is False  # it holds nothing
