"""The pod that runs one SSH job: a pure function from the job to a Pod manifest.

The pod runs ``carbonaware runner ssh`` (see :mod:`carbonaware.runners.sshcommand`) with a
restricted security context. The private key reaches it only as a read-only Secret volume
holding the one key item; the manifest itself carries the Secret's name, never key material.
Long texts (script, command, known_hosts, the job's env) travel as env vars of the runner,
which reads them itself: the job's env is passed as one JSON value so it can never change the
runner's own environment (PATH, PYTHONPATH...). A value too long for one variable is split
into numbered ones (see :mod:`carbonaware.runners.podenv`); a job whose texts cannot fit in a
pod at all is refused with a :class:`~carbonaware.errors.SpecError`. The run id (the
CarbonAwareJob's UID) is on the command line, so a replacement pod attaches to the same run
instead of starting the job again. The owner reference is added by the caller
(``kopf.adopt``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbonaware.errors import SpecError
from carbonaware.runners.podenv import (
    COMMAND_ENV,
    JOB_ENV_ENV,
    KNOWN_HOSTS_ENV,
    SCRIPT_ENV,
    check_fits,
    literal,
    split_env_value,
)
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec, validate_run_id

JOB_NAME_LABEL = "carbonaware.io/job-name"
JOB_NAME_ANNOTATION = "carbonaware.io/job-name"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "ssh-runner"
CONTAINER_NAME = "ssh-runner"
KEY_VOLUME_NAME = "ssh-key"
KEY_MOUNT_DIR = "/var/run/carbonaware/ssh"
KEY_FILE_NAME = "id"
TERMINATION_LOG_PATH = "/dev/termination-log"
RUNNER_UID = 65532
# Seconds beyond the job's own timeout before Kubernetes stops the pod as a backstop.
_DEADLINE_MARGIN_SECONDS = 300
# Time the runner gets on pod deletion to signal the remote job and report.
_TERMINATION_MARGIN_SECONDS = 30
_MAX_NAME_LENGTH = 63
_HASH_LENGTH = 10
_SUFFIX = "-ssh"


@dataclass(frozen=True)
class SshPodTarget:
    """The ServerTarget as the pod needs it: a reference to the key Secret, not the key."""

    host: str
    user: str
    private_key_secret_name: str
    private_key_secret_key: str
    port: int = 22
    known_hosts: str | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    connect_timeout_seconds: float = 20.0


def _shorten(name: str, limit: int) -> str:
    """``name`` if it fits, else a prefix plus a hash of the whole name (deterministic)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    prefix = name[: limit - _HASH_LENGTH - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def ssh_runner_pod_name(job_name: str) -> str:
    """``<job-name>-ssh``, shortened with a hash to at most 63 characters."""
    return _shorten(job_name, _MAX_NAME_LENGTH - len(_SUFFIX)) + _SUFFIX


def job_name_label_value(job_name: str) -> str:
    """The job name as a label value (at most 63 characters; hashed when longer)."""
    return _shorten(job_name, _MAX_NAME_LENGTH)


def _restricted_container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNNER_UID,
        "runAsGroup": RUNNER_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _seconds(value: float) -> str:
    return f"{value:g}"


def build_ssh_runner_pod(
    *,
    job_name: str,
    namespace: str,
    image: str,
    target: SshPodTarget,
    run: SshRunSpec,
    image_pull_policy: str = "IfNotPresent",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account_name: str | None = None,
    run_id: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The Pod manifest that runs ``run`` on ``target`` for the CarbonAwareJob ``job_name``.

    ``run_id`` (default: ``run.run_id``) names the run on the server; pass the
    CarbonAwareJob's UID so that any pod for the job attaches to the one run. Raises
    :class:`SpecError` when the run's texts cannot fit in a pod.
    """
    if run_id is not None and run.run_id is not None and run_id != run.run_id:
        raise SpecError(f"run id {run_id!r} differs from the run spec's {run.run_id!r}")
    chosen_run_id = validate_run_id(run_id) if run_id is not None else run.run_id
    key_path = f"{KEY_MOUNT_DIR}/{KEY_FILE_NAME}"
    command = [
        "carbonaware",
        "runner",
        "ssh",
        f"--host={target.host}",
        f"--port={target.port}",
        f"--user={target.user}",
        f"--key-file={key_path}",
        f"--host-key-policy={HostKeyPolicy(target.host_key_policy).value}",
        f"--connect-timeout-seconds={_seconds(target.connect_timeout_seconds)}",
        f"--kill-grace-seconds={_seconds(run.kill_grace_seconds)}",
        f"--sample-interval-seconds={_seconds(run.sample_interval_seconds)}",
        f"--reattach-seconds={_seconds(run.reattach_seconds)}",
        f"--termination-log={TERMINATION_LOG_PATH}",
        # A deleted, evicted or drained pod lets go of the run; the operator attaches a new pod.
        "--detach-on-signal",
    ]
    if chosen_run_id is not None:
        command.append(f"--run-id={chosen_run_id}")
    if run.working_dir is not None:
        command.append(f"--working-dir={run.working_dir}")
    if run.timeout_seconds is not None:
        command.append(f"--timeout-seconds={_seconds(run.timeout_seconds)}")

    env: list[dict[str, str]] = [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    if target.known_hosts:
        env += split_env_value(KNOWN_HOSTS_ENV, target.known_hosts)
    if run.command is not None:
        env += split_env_value(COMMAND_ENV, run.command)
    if run.script is not None:
        env += split_env_value(SCRIPT_ENV, run.script)
    if run.env:
        job_env = [{"name": name, "value": value} for name, value in run.env]
        env += split_env_value(JOB_ENV_ENV, json.dumps(job_env, separators=(",", ":")))
    command = [literal(argument) for argument in command]
    check_fits(command, env)

    pod_labels = {
        "app.kubernetes.io/name": "carbon-aware-operator",
        COMPONENT_LABEL: COMPONENT,
        "app.kubernetes.io/managed-by": "carbon-aware-operator",
        **dict(labels or {}),
        JOB_NAME_LABEL: job_name_label_value(job_name),
    }
    pod_annotations = {**dict(annotations or {}), JOB_NAME_ANNOTATION: job_name}

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": math.ceil(
            run.kill_grace_seconds + _TERMINATION_MARGIN_SECONDS
        ),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            # Secret files belong to root; fsGroup makes the key readable by the runner's group.
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": image,
                "imagePullPolicy": image_pull_policy,
                "command": command,
                "env": env,
                "volumeMounts": [
                    {"name": KEY_VOLUME_NAME, "mountPath": KEY_MOUNT_DIR, "readOnly": True}
                ],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
                "securityContext": _restricted_container_security_context(),
                "terminationMessagePath": TERMINATION_LOG_PATH,
                "terminationMessagePolicy": "File",
            }
        ],
        "volumes": [
            {
                "name": KEY_VOLUME_NAME,
                "secret": {
                    "secretName": target.private_key_secret_name,
                    "items": [{"key": target.private_key_secret_key, "path": KEY_FILE_NAME}],
                    "defaultMode": 0o400,
                    "optional": False,
                },
            }
        ],
    }
    if run.timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = math.ceil(
            run.timeout_seconds
            + run.kill_grace_seconds
            + target.connect_timeout_seconds
            + _DEADLINE_MARGIN_SECONDS
        )
    if service_account_name:
        spec["serviceAccountName"] = service_account_name
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in tolerations]

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": ssh_runner_pod_name(job_name),
            "namespace": namespace,
            "labels": pod_labels,
            "annotations": pod_annotations,
        },
        "spec": spec,
    }
