"""The SSH-runner pod manifest."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import typer.main

from carbonaware.cli import app
from carbonaware.runners.sshpod import (
    JOB_NAME_LABEL,
    SshPodTarget,
    build_ssh_runner_pod,
    job_name_label_value,
    ssh_runner_pod_name,
)
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec

KNOWN_HOSTS = "server.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPublicHostKeyOnly\n"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def make_pod(**run_overrides: Any) -> dict[str, Any]:
    run_values: dict[str, Any] = {
        "script": "#!/bin/bash\nmake train\n",
        "working_dir": "/srv/ml",
        "env": (("EPOCHS", "3"), ("PATH", "/opt/bin:/usr/bin")),
        "timeout_seconds": 3600,
        "kill_grace_seconds": 15,
    }
    run_values.update(run_overrides)
    return build_ssh_runner_pod(
        job_name="train-model",
        namespace="ml",
        image="registry.example/carbon-aware-operator:1.2.3",
        target=SshPodTarget(
            host="server.example",
            port=2222,
            user="batch",
            private_key_secret_name="batch-ssh-key",
            private_key_secret_key="id_ed25519",
            known_hosts=KNOWN_HOSTS,
            host_key_policy=HostKeyPolicy.STRICT,
        ),
        run=SshRunSpec(**run_values),
    )


def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(pod)["env"]}


def test_metadata_names_and_labels_link_back_to_the_job() -> None:
    pod = make_pod()

    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "train-model-ssh"
    assert pod["metadata"]["namespace"] == "ml"
    assert pod["metadata"]["labels"][JOB_NAME_LABEL] == "train-model"
    assert pod["metadata"]["annotations"][JOB_NAME_LABEL] == "train-model"
    assert "ownerReferences" not in pod["metadata"]


def test_private_key_comes_only_from_a_read_only_secret_volume() -> None:
    pod = make_pod()
    volumes = pod["spec"]["volumes"]

    assert volumes == [
        {
            "name": "ssh-key",
            "secret": {
                "secretName": "batch-ssh-key",
                "items": [{"key": "id_ed25519", "path": "id"}],
                "defaultMode": 0o400,
                "optional": False,
            },
        }
    ]
    assert volumes[0]["secret"]["defaultMode"] == 256
    mounts = container(pod)["volumeMounts"]
    assert mounts == [
        {"name": "ssh-key", "mountPath": "/var/run/carbonaware/ssh", "readOnly": True}
    ]
    assert "--key-file=/var/run/carbonaware/ssh/id" in container(pod)["command"]
    text = json.dumps(pod)
    assert "PRIVATE KEY" not in text
    assert "secretKeyRef" not in text
    assert "envFrom" not in container(pod)


def test_security_context_is_restricted() -> None:
    pod = make_pod()
    pod_context = pod["spec"]["securityContext"]
    context = container(pod)["securityContext"]

    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == 65532
    assert pod_context["fsGroup"] == 65532
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_pod_runs_once_and_reports_through_the_termination_message() -> None:
    pod = make_pod()
    spec = pod["spec"]

    assert spec["restartPolicy"] == "Never"
    assert container(pod)["terminationMessagePolicy"] == "File"
    assert container(pod)["terminationMessagePath"] == "/dev/termination-log"
    assert spec["activeDeadlineSeconds"] > 3600
    assert spec["terminationGracePeriodSeconds"] > 15
    requests = container(pod)["resources"]["requests"]
    assert requests == {"cpu": "10m", "memory": "64Mi"}


def test_command_and_env_carry_the_job() -> None:
    pod = make_pod()
    command = container(pod)["command"]
    env = env_of(pod)

    assert command[:3] == ["carbonaware", "runner", "ssh"]
    assert "--host=server.example" in command
    assert "--port=2222" in command
    assert "--user=batch" in command
    assert "--host-key-policy=Strict" in command
    assert "--working-dir=/srv/ml" in command
    assert "--timeout-seconds=3600" in command
    assert container(pod)["image"] == "registry.example/carbon-aware-operator:1.2.3"
    assert env["CARBONAWARE_SSH_SCRIPT"] == "#!/bin/bash\nmake train\n"
    assert env["CARBONAWARE_SSH_KNOWN_HOSTS"] == KNOWN_HOSTS
    assert json.loads(env["CARBONAWARE_SSH_ENV"]) == [
        {"name": "EPOCHS", "value": "3"},
        {"name": "PATH", "value": "/opt/bin:/usr/bin"},
    ]
    # The job's env never becomes the runner's own environment.
    assert "PATH" not in env
    assert "EPOCHS" not in env


def test_command_variant_without_timeout() -> None:
    pod = make_pod(script=None, command="echo hi", timeout_seconds=None, env=())

    env = env_of(pod)
    assert env["CARBONAWARE_SSH_COMMAND"] == "echo hi"
    assert "CARBONAWARE_SSH_SCRIPT" not in env
    assert "CARBONAWARE_SSH_ENV" not in env
    assert "activeDeadlineSeconds" not in pod["spec"]
    assert not any(arg.startswith("--timeout-seconds") for arg in container(pod)["command"])


def test_the_runner_command_accepts_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    pod = make_pod()
    for name, value in env_of(pod).items():
        monkeypatch.setenv(name, value)
    group = typer.main.get_command(app)
    runner = group.commands["runner"]  # type: ignore[attr-defined]
    ssh_command = runner.commands["ssh"]

    context = ssh_command.make_context("ssh", list(container(pod)["command"][3:]))

    params = context.params
    assert params["host"] == "server.example"
    assert params["port"] == 2222
    assert str(params["key_file"]) == "/var/run/carbonaware/ssh/id"
    assert params["script"] == "#!/bin/bash\nmake train\n"
    assert params["known_hosts"] == KNOWN_HOSTS
    assert json.loads(params["env_json"])[0] == {"name": "EPOCHS", "value": "3"}
    assert params["timeout_seconds"] == 3600
    assert params["kill_grace_seconds"] == 15
    assert str(params["termination_log"]) == "/dev/termination-log"


@pytest.mark.parametrize("length", [1, 58, 59, 60, 63, 64, 200, 253])
def test_names_fit_kubernetes_limits_and_are_deterministic(length: int) -> None:
    job_name = ("a" * (length - 1) + "b")[:length] if length > 1 else "a"

    name = ssh_runner_pod_name(job_name)
    label = job_name_label_value(job_name)

    assert len(name) <= 63
    assert name.endswith("-ssh")
    assert DNS_LABEL.match(name)
    assert len(label) <= 63
    assert name == ssh_runner_pod_name(job_name)
    if length <= 59:
        assert name == f"{job_name}-ssh"
    else:
        # Long names differing only at the end still get different pods.
        assert name != ssh_runner_pod_name(job_name[:-1] + "c")


def test_truncation_never_leaves_a_dangling_separator() -> None:
    job_name = "x" * 47 + "-" * 20 + "tail"

    name = ssh_runner_pod_name(job_name)

    assert DNS_LABEL.match(name)
    assert "--" not in name
