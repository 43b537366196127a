"""Talking to a plane as its administrator: raw API requests, kubectl, namespaces."""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .build import Binaries
from .common import CLIENT_ENVIRONMENT, KubectlError, LocalPlaneError, poll


class PlaneClient:
    """The admin's view of a plane; LocalPlane provides the paths and the server URL."""

    @property
    def pki(self) -> Path:
        raise NotImplementedError

    @property
    def kubeconfig(self) -> Path:
        raise NotImplementedError

    @property
    def server(self) -> str:
        raise NotImplementedError

    @property
    def binaries(self) -> Binaries:
        raise NotImplementedError

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def api(
        self, method: str, path: str, body: Any = None, *, timeout: float = 10
    ) -> tuple[int, Any]:
        """One request to the API server as the admin user: (status, decoded JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, context=self._ssl_context(), timeout=timeout
            ) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def _service_account_exists(self, namespace: str) -> bool | None:
        status, _ = self.api("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
        return True if status == 200 else None

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this plane as the admin user."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **CLIENT_ENVIRONMENT},
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result.returncode, result.stdout, result.stderr)
        return result

    def kubectl_json(self, *args: str, timeout: float = 120) -> Any:
        """kubectl ... -o json, decoded."""
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, manifest: Mapping[str, Any] | str, *, namespace: str | None = None) -> None:
        """kubectl apply a manifest given as a dict or YAML/JSON text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        extra = [f"--namespace={namespace}"] if namespace else []
        self.kubectl("apply", *extra, "-f", "-", input=text)

    def create_namespace(self, prefix: str = "test", *, timeout: float = 30) -> str:
        """A new namespace with a unique name, ready for pods (default SA exists)."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        status, body = self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if status != 201:
            raise LocalPlaneError(f"creating namespace {name} failed ({status}): {body}")
        poll(
            lambda: self._service_account_exists(name),
            timeout=timeout,
            what=f"the default ServiceAccount in {name}",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting for its contents to go."""
        status, body = self.api("DELETE", f"/api/v1/namespaces/{name}")
        if status not in (200, 202, 404):
            raise LocalPlaneError(f"deleting namespace {name} failed ({status}): {body}")
