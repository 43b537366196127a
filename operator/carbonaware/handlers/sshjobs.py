"""Starting SSH runs: the target and its key, the runner pod, or a task of this process.

Pod mode (default) creates a runner pod per job; its termination message carries the run's
summary, so the outcome survives operator restarts. In-process mode runs the same runner
code as a task of the operator (for clusters whose nodes run no containers, like the local
demo). Either way the run is identified on the server by the job's UID: the server holds a
lease per UID, so a second runner for the same job attaches to the first run instead of
starting another, and a run whose runner died is re-attached, never run twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from typing import Any

from pydantic import ValidationError

from carbonaware.api import labels
from carbonaware.api import servertarget as servertarget_api
from carbonaware.api.carbonawarejob import CarbonAwareJobSpec
from carbonaware.api.servertarget import ServerTargetSpec
from carbonaware.errors import (
    SpecError,
    TargetNotAllowedError,
    TargetSecretMissingError,
    TargetSecretNotAllowedError,
)
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.state import HeldWork, TargetKey
from carbonaware.handlers.work import describe_validation_error
from carbonaware.runners.sshpod import SshPodTarget, build_ssh_runner_pod
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec, SshTargetSpec, env_pairs

logger = logging.getLogger(__name__)

IN_PROCESS = "InProcess"
SSH_AUTH_SECRET_TYPE = "kubernetes.io/ssh-auth"


class TargetMissingError(SpecError):
    """The job names a ServerTarget that does not exist (yet)."""


def run_spec(spec: CarbonAwareJobSpec, run_id: str) -> SshRunSpec:
    assert spec.ssh is not None
    return SshRunSpec(
        command=spec.ssh.command,
        script=spec.ssh.script,
        working_dir=spec.ssh.working_dir,
        env=env_pairs([item.to_api() for item in spec.ssh.env]),
        timeout_seconds=float(spec.ssh.timeout_seconds),
        run_id=run_id,
    )


async def target_spec_of(ctx: OperatorContext, namespace: str, name: str) -> ServerTargetSpec:
    """A ServerTarget: from the watch, else (not delivered yet) from the API."""
    known = ctx.registry.targets().get((namespace, name))
    if known is not None and known.spec is not None:
        return known.spec
    # At start-up, or when both objects are applied at once, the job can be seen first. A list
    # (which the operator's RBAC grants, unlike get) of one namespace's targets settles it.
    listed = await ctx.kube.list_objects(servertarget_api.PLURAL, namespace)
    body = next((item for item in listed if item["metadata"]["name"] == name), None)
    if body is None:
        raise TargetMissingError(
            f"ServerTarget {name} does not exist in namespace {namespace}; "
            "create it or fix spec.ssh.targetRef.name"
        )
    try:
        return ServerTargetSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as exc:
        raise TargetMissingError(
            f"ServerTarget {name} in namespace {namespace} cannot be used: "
            f"{describe_validation_error(exc, 'spec')}"
        ) from None


def key_secret_allowed(secret: dict[str, Any]) -> bool:
    """Only Secrets meant as SSH keys: type ``kubernetes.io/ssh-auth``, or an Opaque Secret
    labelled ``carbonaware.io/ssh-key: "true"``. Any other Secret in the namespace (a registry
    password, a TLS key) is never sent to a server."""
    if secret.get("type") == SSH_AUTH_SECRET_TYPE:
        return True
    secret_labels = (secret.get("metadata") or {}).get("labels") or {}
    return secret_labels.get(labels.SSH_KEY) == "true"


async def private_key(ctx: OperatorContext, namespace: str, target: ServerTargetSpec) -> bytes:
    """The key the ServerTarget names, if that Secret exists and is meant as an SSH key."""
    ref = target.private_key_secret_ref
    secret = await ctx.kube.get_secret(namespace, ref.name)
    data = (secret or {}).get("data") or {}
    if secret is None or ref.key not in data:
        raise TargetSecretMissingError(
            f"Secret {ref.name} with key {ref.key} (the SSH private key) does not exist in "
            f"namespace {namespace}: create it (type kubernetes.io/ssh-auth) or fix "
            "spec.privateKeySecretRef of the ServerTarget"
        )
    if not key_secret_allowed(secret):
        raise TargetSecretNotAllowedError(
            f"Secret {ref.name} in namespace {namespace} must be of type "
            f'{SSH_AUTH_SECRET_TYPE} (or carry the label {labels.SSH_KEY}: "true") to be '
            f"used as an SSH key; it is of type {secret.get('type') or 'Opaque'}"
        )
    return base64.b64decode(data[ref.key])


async def check_host_allowed(ctx: OperatorContext, target: ServerTargetSpec) -> None:
    """Refuse a host outside ``ssh_allowed_hosts`` (names are resolved: every address the
    name resolves to must be allowed, unless the name itself matches a pattern)."""
    allow = ctx.allowed_hosts
    if allow.open or allow.name_allowed(target.host):
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
        addresses = {str(info[4][0]) for info in infos}
    except OSError:
        addresses = set()
    if not allow.addresses_allowed(addresses):
        raise TargetNotAllowedError(
            f"host {target.host} is not in the operator's allow-list of SSH targets "
            f"({allow.describe()}); ask a cluster admin, or point spec.host at an allowed server"
        )


async def ssh_inputs(ctx: OperatorContext, target_key: TargetKey) -> tuple[ServerTargetSpec, bytes]:
    """A job's ServerTarget and key, checked before anything is created or started.

    Raises :class:`TargetMissingError`, or a :class:`~carbonaware.errors.TargetError` for a
    missing or unsuitable key Secret and a host outside the allow-list.
    """
    namespace, _ = target_key
    target = await target_spec_of(ctx, *target_key)
    await check_host_allowed(ctx, target)
    # Checked in pod mode too: a pod whose key Secret is missing would wait for its volume
    # forever instead of failing.
    key = await private_key(ctx, namespace, target)
    return target, key


def runner_pod_manifest(
    ctx: OperatorContext, work: HeldWork, spec: CarbonAwareJobSpec, target: ServerTargetSpec
) -> dict[str, Any]:
    assert work.target is not None
    return build_ssh_runner_pod(
        job_name=work.name,
        namespace=work.namespace,
        image=ctx.settings.runner_image,
        image_pull_policy=ctx.settings.runner_image_pull_policy,
        node_selector=ctx.settings.runner_node_selector,
        tolerations=ctx.settings.runner_tolerations,
        target=SshPodTarget(
            host=target.host,
            user=target.user,
            private_key_secret_name=target.private_key_secret_ref.name,
            private_key_secret_key=target.private_key_secret_ref.key,
            port=target.port,
            known_hosts=target.known_hosts,
            host_key_policy=HostKeyPolicy(target.host_key_policy.value),
        ),
        run=run_spec(spec, work.uid),
        labels={labels.JOB_UID: work.uid, labels.TARGET_NAME: work.target[1]},
    )


def ssh_target(target: ServerTargetSpec, key: bytes) -> SshTargetSpec:
    return SshTargetSpec(
        host=target.host,
        user=target.user,
        private_key=key,
        port=target.port,
        known_hosts=target.known_hosts,
        host_key_policy=HostKeyPolicy(target.host_key_policy.value),
    )
