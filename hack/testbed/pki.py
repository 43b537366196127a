"""The plane's PKI (one CA, serving and client certificates) and kubeconfigs, with openssl."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import os
import secrets
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from .build import ensure_openssl
from .common import KUBERNETES_SERVICE_IP, LocalPlaneError


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise LocalPlaneError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _new_key(pki: Path, name: str, algorithm: str = "EC") -> None:
    options = ["ec_paramgen_curve:P-256"] if algorithm == "EC" else ["rsa_keygen_bits:2048"]
    _openssl(
        "genpkey",
        "-algorithm",
        algorithm,
        *[arg for option in options for arg in ("-pkeyopt", option)],
        "-out",
        f"{name}.key",
        cwd=pki,
    )
    os.chmod(pki / f"{name}.key", 0o600)


def _new_ca(pki: Path, name: str, common_name: str) -> None:
    _new_key(pki, name)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{name}.key",
        "-subj",
        f"/CN={common_name}",
        "-days",
        "3650",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def _new_cert(
    pki: Path,
    name: str,
    *,
    ca: str,
    subject: str,
    usage: str,
    alt_names: Sequence[str] = (),
) -> None:
    _new_key(pki, name)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    extensions = [
        "[v3]",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if alt_names:
        extensions.append("subjectAltName=" + ",".join(alt_names))
    (pki / f"{name}.ext").write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-set_serial",
        "0x" + secrets.token_hex(16),
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-extensions",
        "v3",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


# Client identities: (file name, subject). The controller-manager and scheduler use the
# identities the default RBAC bootstrap policy grants; kwok plays every kubelet, so it is
# an administrator like the admin user.
CLIENTS = (
    ("admin", "/O=system:masters/CN=carbonaware-admin"),
    ("kube-controller-manager", "/CN=system:kube-controller-manager"),
    ("kube-scheduler", "/CN=system:kube-scheduler"),
    ("kwok", "/O=system:masters/CN=kwok-controller"),
)


def create_pki(pki: Path, extra_addresses: Sequence[str] = ()) -> None:
    """A CA, the API server's serving cert, client certs, front-proxy and SA keys.

    `extra_addresses` are more IP addresses the API server is reached at (a real node's).
    """
    ensure_openssl()
    pki.mkdir(parents=True, exist_ok=True)
    _new_ca(pki, "ca", "carbonaware-localplane-ca")
    _new_ca(pki, "front-proxy-ca", "carbonaware-localplane-front-proxy-ca")
    apiserver_names = [
        "IP:127.0.0.1",
        "DNS:localhost",
        f"IP:{KUBERNETES_SERVICE_IP}",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        *(f"IP:{address}" for address in extra_addresses),
    ]
    jobs: list[Callable[[], None]] = [
        functools.partial(
            _new_cert,
            pki,
            "apiserver",
            ca="ca",
            subject="/CN=kube-apiserver",
            usage="serverAuth",
            alt_names=apiserver_names,
        ),
        functools.partial(
            _new_cert,
            pki,
            "front-proxy-client",
            ca="front-proxy-ca",
            subject="/CN=front-proxy-client",
            usage="clientAuth",
        ),
        functools.partial(_new_service_account_key, pki),
    ]
    jobs += [
        functools.partial(_new_cert, pki, name, ca="ca", subject=subject, usage="clientAuth")
        for name, subject in CLIENTS
    ]
    # Each job is a few openssl processes; running them side by side halves the wait.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _new_service_account_key(pki: Path) -> None:
    _new_key(pki, "service-account", algorithm="RSA")
    _openssl(
        "pkey", "-in", "service-account.key", "-pubout", "-out", "service-account.pub", cwd=pki
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, pki: Path, client: str, user: str) -> None:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""
    path.write_text(
        "\n".join(
            [
                "apiVersion: v1",
                "kind: Config",
                "clusters:",
                "- name: localplane",
                "  cluster:",
                f"    server: {server}",
                f"    certificate-authority-data: {_b64(pki / 'ca.crt')}",
                "users:",
                f"- name: {user}",
                "  user:",
                f"    client-certificate-data: {_b64(pki / f'{client}.crt')}",
                f"    client-key-data: {_b64(pki / f'{client}.key')}",
                "contexts:",
                "- name: localplane",
                "  context:",
                "    cluster: localplane",
                f"    user: {user}",
                "    namespace: default",
                "current-context: localplane",
                "",
            ]
        )
    )
    os.chmod(path, 0o600)


def node_certificates(node_name: str, host_ip: str) -> list[tuple[str, str, str, list[str]]]:
    """(file name, subject, usage, alt names) of the certificates a real worker node needs."""
    serving = [f"IP:{host_ip}", f"DNS:{node_name}"]
    return [
        # The kubelet's own identity: the Node authorizer and NodeRestriction key on it.
        ("kubelet", f"/O=system:nodes/CN=system:node:{node_name}", "clientAuth", []),
        ("kubelet-serving", f"/CN={node_name}", "serverAuth", serving),
        # Bound to system:node-proxier by the default RBAC policy.
        ("kube-proxy", "/CN=system:kube-proxy", "clientAuth", []),
        # The API server's identity towards kubelets (logs, exec); bound to
        # system:kubelet-api-admin when the node starts.
        ("apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client", "clientAuth", []),
        ("metrics-server", "/O=system:masters/CN=metrics-server", "clientAuth", []),
        # The aggregator checks the name of the Service the APIService points at.
        (
            "metrics-server-serving",
            "/CN=metrics-server",
            "serverAuth",
            [*serving, "DNS:metrics-server.kube-system.svc"],
        ),
        ("coredns", "/O=system:masters/CN=coredns", "clientAuth", []),
    ]


def create_node_pki(pki: Path, node_name: str, host_ip: str) -> None:
    """The real node's certificates, signed by the plane's CA, made side by side."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(
                _new_cert, pki, name, ca="ca", subject=subject, usage=usage, alt_names=names
            )
            for name, subject, usage, names in node_certificates(node_name, host_ip)
        ]
        for future in futures:
            future.result()
