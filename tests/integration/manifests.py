"""Manifests the integration tests share: SSH key Secrets, ServerTargets and SSH jobs."""

from __future__ import annotations

from typing import Any

from .sshd import SshdServer

KEY_SECRET = "server-key"


def key_secret(name: str, private_key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/ssh-auth",
        "stringData": {"ssh-privatekey": private_key},
    }


def server_target(name: str, server: SshdServer, **spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "privateKeySecretRef": {"name": KEY_SECRET},
        "knownHosts": server.known_hosts,
        "region": "GB",
    }
    values.update(spec)
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "ServerTarget",
        "metadata": {"name": name},
        "spec": {k: v for k, v in values.items() if v is not None},
    }


def ssh_job(
    name: str,
    target: str,
    *,
    schedule: dict[str, Any] | None = None,
    priority: int = 0,
    **ssh: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule or {"policy": "Immediate"},
            "priority": priority,
            "ssh": {"targetRef": {"name": target}, **ssh},
        },
    }


def fake_target(
    plane: Any,
    namespace: str,
    *,
    name: str = "box",
    host: str = "192.0.2.1",
    secret: str = "key",
    secret_type: str = "kubernetes.io/ssh-auth",
    max_concurrent: int = 1,
) -> None:
    """A ServerTarget (and its key Secret) that nothing connects to: its runner pods run on
    kwok, its host is a documentation address."""
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "type": secret_type,
            "stringData": {"ssh-privatekey": "k"},
        },
        namespace=namespace,
    )
    plane.apply(
        {
            "apiVersion": "carbonaware.io/v1alpha1",
            "kind": "ServerTarget",
            "metadata": {"name": name},
            "spec": {
                "host": host,
                "user": "batch",
                "hostKeyPolicy": "AcceptAny",
                "maxConcurrent": max_concurrent,
                "privateKeySecretRef": {"name": secret, "key": "ssh-privatekey"},
            },
        },
        namespace=namespace,
    )


def ssh_caj(
    name: str, schedule: dict[str, Any] | None = None, *, target: str = "box"
) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule or {"policy": "Immediate"},
            "ssh": {"targetRef": {"name": target}, "command": "sleep 600"},
        },
    }
