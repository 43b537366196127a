"""Pausing an SSH run finds it as a cancel does: the job's ServerTarget and key Secret (with
the allow-list and Secret-type checks), its UID as the run id; finished jobs are left alone,
and nothing secret is logged."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from carbonaware.config import OperatorSettings
from carbonaware.errors import SpecError, TargetNotAllowedError, TargetSecretNotAllowedError
from carbonaware.handlers import sshpause
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.handlers.sshpause import signal_ssh_run
from carbonaware.metrics import Metrics
from carbonaware.runners.allowlist import HostAllowList
from carbonaware.runners.sshspec import HostKeyPolicy, SshTargetSpec

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PRIVATE_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n"
KNOWN_HOSTS = "box.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"


class FakeKube:
    def __init__(self, secret_type: str = "kubernetes.io/ssh-auth") -> None:
        self.secret_type = secret_type
        self.calls: list[str] = []

    async def list_objects(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(f"list {plural} {namespace}")
        spec = {"host": "box.example", "port": 2222, "user": "batch", "knownHosts": KNOWN_HOSTS,
                "privateKeySecretRef": {"name": "box-key"}}  # fmt: skip
        return [{"metadata": {"name": "box", "namespace": namespace}, "spec": spec}]

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(f"secret {namespace}/{name}")
        return {
            "metadata": {"name": name, "namespace": namespace},
            "type": self.secret_type,
            "data": {"ssh-privatekey": base64.b64encode(PRIVATE_KEY).decode()},
        }


def context(kube: FakeKube, allowed_hosts: str | None = None) -> OperatorContext:
    metrics = Metrics()
    return OperatorContext(
        settings=OperatorSettings(tick_seconds=60),
        kube=cast(Any, kube),
        metrics=metrics,
        provider=cast(Any, None),
        intensity=RegionIntensity(cast(Any, None), metrics),
        clock=lambda: NOW,
        allowed_hosts=HostAllowList.parse(allowed_hosts),
    )


def job(status: dict[str, Any], ssh: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"ssh": {"targetRef": {"name": "box"}, "command": "./train"}}
    if not ssh:
        spec = {"jobTemplate": {"spec": {"template": {"spec": {}}}}}
    return {
        "metadata": {"name": "train", "namespace": "ns", "uid": "0b6f-uid"},
        "spec": spec,
        "status": status,
    }


RELEASED = {"releaseTime": "2026-03-01T11:00:00Z"}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[SshTargetSpec, str, str]]:
    calls: list[tuple[SshTargetSpec, str, str]] = []

    async def signal_run(target: SshTargetSpec, run_id: str, signal: str) -> bool:
        calls.append((target, run_id, signal))
        return run_id != "finished-on-server"

    monkeypatch.setattr(sshpause, "signal_run", signal_run)
    return calls


@pytest.mark.parametrize("status", [RELEASED, {**RELEASED, "podName": "train-ssh"}])
async def test_the_run_is_found_as_a_cancel_finds_it(
    sent: list[tuple[SshTargetSpec, str, str]],
    status: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube()
    caplog.set_level(logging.DEBUG)

    assert await signal_ssh_run(context(kube), job(status), "STOP")
    assert await signal_ssh_run(context(kube), job(status), "CONT")

    assert [(run_id, signal) for _, run_id, signal in sent] == [
        ("0b6f-uid", "STOP"),
        ("0b6f-uid", "CONT"),
    ]
    target = sent[0][0]
    assert (target.host, target.port, target.user) == ("box.example", 2222, "batch")
    assert target.known_hosts == KNOWN_HOSTS
    assert target.host_key_policy is HostKeyPolicy.STRICT
    assert target.private_key == PRIVATE_KEY
    assert "secret ns/box-key" in kube.calls
    assert "paused the SSH run of ns/train" in caplog.text
    assert "resumed the SSH run of ns/train" in caplog.text
    assert "c2VjcmV0" not in caplog.text
    assert "PRIVATE KEY" not in caplog.text


async def test_a_run_over_on_its_server_is_reported(
    sent: list[tuple[SshTargetSpec, str, str]],
) -> None:
    body = job(RELEASED)
    body["metadata"]["uid"] = "finished-on-server"

    assert not await signal_ssh_run(context(FakeKube()), body, "STOP")
    assert len(sent) == 1


async def test_a_finished_job_is_not_signalled(sent: list[tuple[SshTargetSpec, str, str]]) -> None:
    kube = FakeKube()
    finished = {**RELEASED, "completionTime": "2026-03-01T11:30:00Z", "state": "Succeeded"}

    assert not await signal_ssh_run(context(kube), job(finished), "CONT")
    assert sent == []
    assert kube.calls == []


@pytest.mark.parametrize(
    "body",
    [job({}), job({**RELEASED, "jobName": "train"}, ssh=False)],
    ids=["held", "kubernetes-job"],
)
async def test_a_job_without_a_released_ssh_run_is_refused(
    sent: list[tuple[SshTargetSpec, str, str]], body: dict[str, Any]
) -> None:
    with pytest.raises(SpecError, match="no released SSH run to pause"):
        await signal_ssh_run(context(FakeKube()), body, "STOP")
    assert sent == []


async def test_the_cancel_paths_checks_apply(sent: list[tuple[SshTargetSpec, str, str]]) -> None:
    with pytest.raises(TargetNotAllowedError):
        await signal_ssh_run(
            context(FakeKube(), allowed_hosts="*.corp.example"), job(RELEASED), "STOP"
        )
    with pytest.raises(TargetSecretNotAllowedError):
        await signal_ssh_run(context(FakeKube(secret_type="Opaque")), job(RELEASED), "STOP")
    assert sent == []
