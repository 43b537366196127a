"""The SSH-runner pod manifest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer.main

from carbonaware.cli import app
from carbonaware.errors import SpecError
from carbonaware.runners.podenv import MAX_ENV_STRING_BYTES, MAX_RUNNER_EXEC_BYTES, exec_bytes
from carbonaware.runners.sshcommand import SshRunnerOptions, build_specs, with_chunked_env
from carbonaware.runners.sshpod import (
    JOB_NAME_LABEL,
    SshPodTarget,
    build_ssh_runner_pod,
    job_name_label_value,
    ssh_runner_pod_name,
)
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec

from .test_podenv import as_environ, kubelet_expand

KNOWN_HOSTS = "server.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPublicHostKeyOnly\n"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def make_pod(run_id: str | None = None, **run_overrides: Any) -> dict[str, Any]:
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
        run=SshRunSpec(**run_values, run_id=run_id),
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
    script = '#!/bin/bash\necho "pid $$ in $(HOME) at $(date +%s)"\nmake train\n'
    pod = make_pod(script=script, working_dir="/srv/$(USER)/ml$$")
    # What the kubelet makes of the pod's env and command: $$ is $, $(NAME) of a variable
    # defined before it is its value.
    environ = as_environ(container(pod)["env"])
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    group = typer.main.get_command(app)
    runner = group.commands["runner"]  # type: ignore[attr-defined]
    ssh_command = runner.commands["ssh"]

    arguments = [kubelet_expand(argument, environ) for argument in container(pod)["command"]]
    context = ssh_command.make_context("ssh", arguments[3:])

    params = context.params
    assert params["host"] == "server.example"
    assert params["port"] == 2222
    assert str(params["key_file"]) == "/var/run/carbonaware/ssh/id"
    assert params["script"] == script
    assert params["working_dir"] == "/srv/$(USER)/ml$$"
    assert params["known_hosts"] == KNOWN_HOSTS
    assert json.loads(params["env_json"])[0] == {"name": "EPOCHS", "value": "3"}
    assert params["timeout_seconds"] == 3600
    assert params["kill_grace_seconds"] == 15
    assert str(params["termination_log"]) == "/dev/termination-log"
    # A deleted or evicted runner pod lets go of the run; it is not a cancel.
    assert params["detach_on_signal"] is True


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


JOB_UID = "0b9c3e52-5b8e-4a0c-9d77-1f0e6c1c2a44"


def test_run_id_and_reattach_window_are_on_the_command_line() -> None:
    with_uid = build_ssh_runner_pod(
        job_name="train-model",
        namespace="ml",
        image="img",
        target=SshPodTarget("h", "u", "s", "k"),
        run=SshRunSpec(command="x", reattach_seconds=120),
        run_id=JOB_UID,
    )
    from_spec = make_pod(run_id=JOB_UID)
    without = make_pod()

    assert f"--run-id={JOB_UID}" in container(with_uid)["command"]
    assert "--reattach-seconds=120" in container(with_uid)["command"]
    assert f"--run-id={JOB_UID}" in container(from_spec)["command"]
    assert not any(arg.startswith("--run-id") for arg in container(without)["command"])
    assert "--reattach-seconds=300" in container(without)["command"]


@pytest.mark.parametrize("run_id", ["a/b", "", "x" * 65])
def test_an_unsafe_run_id_is_refused(run_id: str) -> None:
    with pytest.raises(SpecError):
        build_ssh_runner_pod(
            job_name="j",
            namespace="n",
            image="img",
            target=SshPodTarget("h", "u", "s", "k"),
            run=SshRunSpec(command="x"),
            run_id=run_id,
        )


def test_a_run_id_that_contradicts_the_run_spec_is_refused() -> None:
    with pytest.raises(SpecError):
        build_ssh_runner_pod(
            job_name="j",
            namespace="n",
            image="img",
            target=SshPodTarget("h", "u", "s", "k"),
            run=SshRunSpec(command="x", run_id="one"),
            run_id="other",
        )


def big_script() -> str:
    header = "#!/bin/sh\n# " + "quotes ' \" ` $ \\ and é\n" * 10
    return header + "x" * (256 * 1024 - len(header.encode()) - 1) + "\n"


def big_env(entries: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"VALUE_{index}", chr(65 + index % 26) * (32 * 1024)) for index in range(entries))


def big_pod(entries: int) -> dict[str, Any]:
    return build_ssh_runner_pod(
        job_name="big",
        namespace="ml",
        image="img",
        target=SshPodTarget("h", "u", "s", "k", known_hosts=KNOWN_HOSTS * 500),
        run=SshRunSpec(script=big_script(), env=big_env(entries), timeout_seconds=60),
        run_id=JOB_UID,
    )


def test_long_texts_travel_in_chunks_that_exec_accepts(tmp_path: Any) -> None:
    pod = big_pod(16)
    entries = container(pod)["env"]
    command = container(pod)["command"]

    assert pod == big_pod(16)  # pure and deterministic
    names = [entry["name"] for entry in entries]
    assert "CARBONAWARE_SSH_SCRIPT" not in names
    assert "CARBONAWARE_SSH_SCRIPT_CHUNKS" in names
    assert "CARBONAWARE_SSH_ENV_CHUNKS" in names
    assert "CARBONAWARE_SSH_KNOWN_HOSTS" in names  # 34 KiB fits in one variable
    for entry in entries:
        assert len(f"{entry['name']}={entry['value']}".encode()) + 1 <= MAX_ENV_STRING_BYTES
    assert exec_bytes(command, entries) <= MAX_RUNNER_EXEC_BYTES < 2 * 1024 * 1024
    assert len(json.dumps(pod).encode()) < 1_500_000  # the API server's object size

    # A real exec with exactly that environment and argument list, joined back in the child.
    joiner = (
        "import hashlib, json, os, sys\n"
        "from carbonaware.runners.podenv import join_env_value\n"
        "script = join_env_value('CARBONAWARE_SSH_SCRIPT', os.environ)\n"
        "env = json.loads(join_env_value('CARBONAWARE_SSH_ENV', os.environ))\n"
        "print(hashlib.sha256(script.encode()).hexdigest(), len(env), env[5]['value'][:3],\n"
        "      len(sys.argv) - 1)\n"
    )
    child_env = as_environ(entries)  # as the kubelet passes them: $$ is $ again
    child_env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run(
        [sys.executable, "-c", joiner, *(kubelet_expand(a, child_env) for a in command)],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    digest = hashlib.sha256(big_script().encode()).hexdigest()
    assert result.stdout.split() == [digest, "16", "FFF", str(len(command))]


def test_texts_that_cannot_fit_in_a_pod_are_refused_with_a_clear_spec_error() -> None:
    with pytest.raises(SpecError) as refused:
        big_pod(128)

    message = str(refused.value)
    assert "spec.ssh.env" in message
    assert "KiB" in message
    assert "must be shorter" in message


def test_the_runner_command_joins_a_chunked_manifest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    pod = big_pod(16)
    for name in list(os.environ):
        if name.startswith("CARBONAWARE_SSH_"):
            monkeypatch.delenv(name)
    environ = as_environ(container(pod)["env"])  # as the kubelet passes them
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    arguments = [kubelet_expand(a, environ) for a in container(pod)["command"][3:]]
    ssh_command = typer.main.get_command(app).commands["runner"].commands["ssh"]  # type: ignore[attr-defined]
    params = ssh_command.make_context("ssh", arguments).params
    key_file = tmp_path / "id"
    key_file.write_text("key")

    options = with_chunked_env(
        SshRunnerOptions(
            host=params["host"],
            user=params["user"],
            key_file=key_file,
            known_hosts=params["known_hosts"],
            script=params["script"],
            env_json=params["env_json"],
            run_id=params["run_id"],
            reattach_seconds=params["reattach_seconds"],
        ),
        os.environ,
    )
    target, run = build_specs(options)

    assert params["script"] is None  # only chunks were sent
    assert run.script == big_script()
    assert run.env == big_env(16)
    assert run.run_id == JOB_UID
    assert target.known_hosts == KNOWN_HOSTS * 500


def test_runner_pods_are_placed_by_node_selector_and_tolerations() -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}
    pod = build_ssh_runner_pod(
        job_name="train-model",
        namespace="ml",
        image="registry.example/carbon-aware-operator:1.2.3",
        image_pull_policy="Never",
        target=SshPodTarget(
            host="server.example",
            user="batch",
            private_key_secret_name="batch-ssh-key",
            private_key_secret_key="id_ed25519",
            known_hosts=KNOWN_HOSTS,
            host_key_policy=HostKeyPolicy.STRICT,
        ),
        run=SshRunSpec(command="true"),
        node_selector={"dedicated": "batch"},
        tolerations=[toleration],
    )
    assert pod["spec"]["nodeSelector"] == {"dedicated": "batch"}
    assert pod["spec"]["tolerations"] == [toleration]
    assert container(pod)["imagePullPolicy"] == "Never"
    # Without them the pod goes wherever the scheduler puts it.
    assert "nodeSelector" not in make_pod()["spec"]
    assert "tolerations" not in make_pod()["spec"]


def test_runner_placement_settings_read_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from carbonaware.config import OperatorSettings

    monkeypatch.setenv("CARBONAWARE_RUNNER_NODE_SELECTOR", '{"carbonaware.io/real-node": "true"}')
    monkeypatch.setenv(
        "CARBONAWARE_RUNNER_TOLERATIONS",
        '[{"key": "carbonaware.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]',
    )
    monkeypatch.setenv("CARBONAWARE_RUNNER_IMAGE_PULL_POLICY", "Never")
    settings = OperatorSettings()
    assert settings.runner_node_selector == {"carbonaware.io/real-node": "true"}
    assert settings.runner_tolerations[0]["operator"] == "Exists"
    assert settings.runner_image_pull_policy == "Never"
