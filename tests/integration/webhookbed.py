"""The policy webhook on the local plane: a certificate for a loopback operator, and the
chart's MutatingWebhookConfiguration pointed at it.

In a cluster the chart installs the configuration, pointing at the operator's Service, with
a CA it generates. Here the operator is a local process, so the configuration rendered from
the chart gets a URL on 127.0.0.1 and the CA made below; its rules, object selector,
failure policy and timeout stay the chart's. Its namespace selector is narrowed to the
namespaces a test labels, so that Jobs of other tests sharing the plane never reach it.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from carbonaware.handlers.admission import WEBHOOK_ID

from .operatorproc import REPO_ROOT, free_port

CHART = REPO_ROOT / "helm" / "carbon-aware-operator"
NAMESPACE_LABEL = "carbonaware-test/policies"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_certificate(directory: Path, *, host: str = "127.0.0.1") -> bytes:
    """A new CA and a serving certificate for ``host`` signed by it, written as the kubelet
    mounts a kubernetes.io/tls Secret: ca.crt, tls.crt and tls.key in a new directory, then
    ``directory`` (a symbolic link) swapped to it at once; the CA's PEM."""
    now = datetime.now(UTC)
    ca_key, key = _key(), _key()
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"test webhook CA {now:%H%M%S.%f}")]
    )
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    files = {
        "ca.crt": ca.public_bytes(pem),
        "tls.key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()),
        "tls.crt": cert.public_bytes(pem),
    }  # fmt: skip
    version = directory.parent / f".{directory.name}-{now:%Y%m%dT%H%M%S%f}"
    version.mkdir(parents=True)
    for name, data in files.items():
        (version / name).write_bytes(data)
    link = directory.parent / f".{directory.name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, directory)
    return files["ca.crt"]


def local_configuration(helm: Path, port: int, ca_pem: bytes) -> dict[str, Any]:
    """The chart's MutatingWebhookConfiguration, calling an operator on 127.0.0.1:``port``."""
    rendered = subprocess.run(
        [str(helm), "template", "demo", str(CHART), "--namespace", "carbonaware-system",
         "--show-only", "templates/webhook-configuration.yaml"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    configuration = yaml.safe_load(rendered)
    configuration["metadata"] = {"name": "carbonaware-policies-test"}
    for hook in configuration["webhooks"]:
        hook["clientConfig"] = {
            "url": f"https://127.0.0.1:{port}/{WEBHOOK_ID}",
            "caBundle": base64.b64encode(ca_pem).decode(),
        }
        hook["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: "on"}}
    return dict(configuration)


def set_ca_bundle(plane: Any, name: str, ca_pem: bytes) -> None:
    """Replace the CA the API server trusts for the webhook (as a chart upgrade would)."""
    bundle = base64.b64encode(ca_pem).decode()
    plane.kubectl("patch", "mutatingwebhookconfiguration", name, "--type=json", "-p",
                  f'[{{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", '
                  f'"value": "{bundle}"}}]')  # fmt: skip


def serving(port: int) -> bool:
    """Whether an HTTPS server answers on 127.0.0.1:``port`` (its certificate is not checked)."""
    try:
        ssl.get_server_certificate(("127.0.0.1", port), timeout=2)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Webhook:
    """The policy webhook installed on a plane for an operator process to serve."""

    certificates: Path
    port: int
    configuration: str

    def settings(self) -> dict[str, object]:
        """The operator's settings that serve it (``operator_env`` keywords)."""
        return {
            "webhook_port": self.port,
            "webhook_address": "127.0.0.1",
            "webhook_cert_dir": self.certificates,
            "webhook_cert_check_seconds": 1,
            "webhook_policy_cache_seconds": 0.5,
        }


@contextlib.contextmanager
def installed_webhook(plane: Any, directory: Path) -> Iterator[Webhook]:
    """A certificate under ``directory`` and the chart's configuration calling 127.0.0.1 on a
    free port, removed afterwards."""
    certificates = directory / "certs"
    ca = write_certificate(certificates)
    port = free_port()
    configuration = local_configuration(plane.binaries.helm, port, ca)
    name = configuration["metadata"]["name"]
    plane.apply(configuration)
    try:
        yield Webhook(certificates, port, name)
    finally:
        plane.kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")


def governed_namespace(plane: Any, namespace: str) -> str:
    """Label ``namespace`` so that its Jobs reach the webhook."""
    plane.kubectl("label", "namespace", namespace, f"{NAMESPACE_LABEL}=on")
    return namespace
