"""The only module that talks to the Kubernetes API client.

Everything is returned as plain dicts in API (camelCase) form. The official client is
synchronous; every call runs in a dedicated thread pool so the event loop never blocks,
with an urllib3 pool as large as that thread pool. API errors become
:class:`~carbonaware.errors.KubernetesError` with the HTTP status and, for 429, the
server's Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from carbonaware import GROUP, VERSION
from carbonaware.errors import ConfigError, KubernetesError

T = TypeVar("T")
Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
BAD_REQUEST = 400
NOT_FOUND = 404
FORBIDDEN = 403
CONFLICT = 409
UNPROCESSABLE = 422


def _decode(response: Any) -> Body:
    data = response.data if hasattr(response, "data") else response
    if isinstance(data, bytes | bytearray):
        data = data.decode()
    decoded: Body = json.loads(data) if data else {}
    return decoded


def _error(exc: ApiException | HTTPError, action: str) -> KubernetesError:
    if isinstance(exc, HTTPError):
        return KubernetesError(f"{action}: API server unreachable ({type(exc).__name__})")
    retry_after: float | None = None
    header = (exc.headers or {}).get("Retry-After") if exc.headers else None
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    message = exc.reason or "error"
    try:
        detail = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        detail = None
    return KubernetesError(
        f"{action}: {exc.status} {detail or message}", status=exc.status, retry_after=retry_after
    )


def kubeconfig_path() -> str | None:
    """The first file of ``$KUBECONFIG`` (the client reads one), else the client's default."""
    value = os.environ.get("KUBECONFIG")
    return value.split(os.pathsep)[0] if value else None


def kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig context in use (``default`` when it names none), as
    kubectl picks it."""
    try:
        contexts, active = config.list_kube_config_contexts(
            config_file=kubeconfig or kubeconfig_path()
        )
    except (ConfigException, OSError) as exc:
        raise ConfigError(f"cannot read the kubeconfig: {exc}") from exc
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


class Kube:
    """A thin async facade over the generated client, returning dicts.

    Every call has a timeout (``timeout_seconds`` for connecting and for each read), so a
    hung API server can delay the refresh loop by at most that much, never stop it.
    """

    def __init__(
        self, api_client: client.ApiClient, *, threads: int = 16, timeout_seconds: float = 30.0
    ) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.timeout_seconds = timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")

    @classmethod
    def connect(
        cls,
        *,
        threads: int = 16,
        timeout_seconds: float = 30.0,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> Kube:
        """In-cluster credentials when running in a Pod, else ``$KUBECONFIG``/``~/.kube/config``.

        ``kubeconfig``/``context`` (the kubectl plugin's flags) always read a kubeconfig."""
        configuration = client.Configuration()
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and not (kubeconfig or context):
                config.load_incluster_config(client_configuration=configuration)
            else:
                # Read $KUBECONFIG now: the client's default was fixed when it was imported.
                config.load_kube_config(
                    config_file=kubeconfig or kubeconfig_path(),
                    context=context,
                    client_configuration=configuration,
                )
        except ConfigException as exc:
            raise ConfigError(f"no Kubernetes credentials found: {exc}") from exc
        configuration.connection_pool_maxsize = threads
        return cls(
            client.ApiClient(configuration), threads=threads, timeout_seconds=timeout_seconds
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    async def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Body:
        timeout = (self.timeout_seconds, self.timeout_seconds)

        def call() -> Body:
            # Read the body in the worker: that returns the connection to the pool before the
            # worker sends its next request. Read on the event loop, under load the connection
            # stayed out meanwhile, the pool opened more and discarded them on their return,
            # and each later request paid for a new TLS handshake.
            response = fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            return _decode(response)

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, call)
        except (ApiException, HTTPError) as exc:
            raise _error(exc, action) from exc
        except RuntimeError as exc:  # the pool is shut down: the operator is stopping
            raise KubernetesError(f"{action}: the operator is stopping") from exc

    async def _optional(
        self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Body | None:
        try:
            return await self._call(action, fn, *args, **kwargs)
        except KubernetesError as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    async def _delete(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A delete with a UID precondition: gone (404) or replaced by a namesake (409) is
        no error."""
        try:
            await self._call(action, fn, *args, **kwargs)
        except KubernetesError as exc:
            if exc.status not in (NOT_FOUND, CONFLICT):
                raise

    # ------------------------------------------------------------------ our resources

    async def get_object(self, plural: str, namespace: str, name: str) -> Body | None:
        return await self._optional(
            f"get {plural} {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            GROUP, VERSION, namespace, plural, name,
        )  # fmt: skip

    async def list_objects(
        self, plural: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Body]:
        extra = {"label_selector": label_selector} if label_selector else {}
        if namespace:
            body = await self._call(
                f"list {plural}", self.custom.list_namespaced_custom_object,
                GROUP, VERSION, namespace, plural, **extra,
            )  # fmt: skip
        else:
            body = await self._call(
                f"list {plural}", self.custom.list_cluster_custom_object, GROUP, VERSION, plural,
                **extra,
            )  # fmt: skip
        items: list[Body] = body.get("items", [])
        return items

    async def create_object(self, plural: str, namespace: str, body: Body) -> Body:
        return await self._call(
            f"create {plural} {namespace}/{body['metadata'].get('name')}",
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, body,
        )  # fmt: skip

    async def delete_object(self, plural: str, namespace: str, name: str, uid: str) -> None:
        """Delete one of our objects and what it owns, only if it is still ``uid``."""
        await self._delete(
            f"delete {plural} {namespace}/{name}",
            self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, plural,
            name, body={"propagationPolicy": "Background", "preconditions": {"uid": uid}},
        )  # fmt: skip

    async def patch_object(
        self, plural: str, namespace: str, name: str, patch: Body, *, field_manager: str
    ) -> Body:
        """JSON-merge-patch one of our objects (its metadata: annotations), as ``field_manager``."""
        return await self._call(
            f"patch {plural} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            GROUP, VERSION, namespace, plural, name, patch, field_manager=field_manager,
        )  # fmt: skip

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Body,
        *,
        resource_version: str | None = None,
    ) -> Body:
        """JSON-merge-patch ``status`` of one of our objects through its status subresource.

        With ``resource_version`` the write succeeds only if the object is still at that
        version (a 409 otherwise): the write is then based on exactly what was read.
        """
        patch: Body = {"status": status}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self._call(
            f"patch {plural} {namespace}/{name} status",
            self.custom.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, plural, name, patch,
        )  # fmt: skip

    # ------------------------------------------------------------------ jobs and pods

    async def create_job(self, namespace: str, body: Body) -> Body:
        return await self._call(
            f"create Job {namespace}/{body['metadata'].get('name')}",
            self.batch.create_namespaced_job, namespace, body,
        )  # fmt: skip

    async def get_job(self, namespace: str, name: str) -> Body | None:
        return await self._optional(
            f"get Job {namespace}/{name}", self.batch.read_namespaced_job, name, namespace
        )

    async def patch_job(
        self, namespace: str, name: str, patch: Body, *, field_manager: str | None = None
    ) -> Body:
        extra = {"field_manager": field_manager} if field_manager else {}
        return await self._call(
            f"patch Job {namespace}/{name}",
            self.batch.patch_namespaced_job, name, namespace, patch, **extra,
        )  # fmt: skip

    async def list_jobs(self, namespace: str | None, label_selector: str) -> list[Body]:
        """Jobs matching ``label_selector`` in ``namespace`` (None: every namespace)."""
        if namespace:
            body = await self._call(
                f"list Jobs in {namespace}", self.batch.list_namespaced_job, namespace,
                label_selector=label_selector,
            )  # fmt: skip
        else:
            body = await self._call(
                "list Jobs", self.batch.list_job_for_all_namespaces, label_selector=label_selector
            )
        items: list[Body] = body.get("items", [])
        return items

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Delete one Job and its pods, only if it is still the object ``uid`` (404: gone)."""
        await self._delete(
            f"delete Job {namespace}/{name}", self.batch.delete_namespaced_job, name,
            namespace, body={"propagationPolicy": "Background", "preconditions": {"uid": uid}},
        )  # fmt: skip

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete one Pod, only if it is still the object ``uid`` (404: gone)."""
        await self._delete(
            f"delete Pod {namespace}/{name}", self.core.delete_namespaced_pod, name,
            namespace, body={"preconditions": {"uid": uid}},
        )  # fmt: skip

    async def get_pod(self, namespace: str, name: str) -> Body | None:
        """One Pod by name, through a list (the operator may list pods, not get them)."""
        body = await self._call(
            f"list Pods in {namespace}", self.core.list_namespaced_pod, namespace,
            field_selector=f"metadata.name={name}",
        )  # fmt: skip
        items: list[Body] = body.get("items", [])
        return items[0] if items else None

    async def list_all_pods(self, namespace: str | None, label_selector: str) -> list[Body]:
        """Pods matching ``label_selector`` in ``namespace`` (None: every namespace)."""
        if namespace:
            return await self.list_pods(namespace, label_selector)
        body = await self._call(
            "list Pods", self.core.list_pod_for_all_namespaces, label_selector=label_selector
        )
        items: list[Body] = body.get("items", [])
        return items

    async def create_pod(self, namespace: str, body: Body) -> Body:
        return await self._call(
            f"create Pod {namespace}/{body['metadata'].get('name')}",
            self.core.create_namespaced_pod, namespace, body,
        )  # fmt: skip

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        body = await self._call(
            f"list Pods in {namespace}", self.core.list_namespaced_pod, namespace,
            label_selector=label_selector,
        )  # fmt: skip
        items: list[Body] = body.get("items", [])
        return items

    async def patch_pod(self, namespace: str, name: str, patch: Body) -> Body:
        return await self._call(
            f"patch Pod {namespace}/{name}", self.core.patch_namespaced_pod, name, namespace, patch
        )

    async def create_event(
        self, obj: Body, *, type_: str, reason: str, message: str, component: str
    ) -> Body:
        """A core/v1 Event about ``obj`` (what ``kubectl describe`` shows)."""
        meta = obj.get("metadata", {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name', 'object')}.",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
            "action": reason,
            "count": 1,
        }
        return await self._call(
            f"create Event for {meta.get('namespace')}/{meta.get('name')}",
            self.core.create_namespaced_event, meta.get("namespace"), event,
        )  # fmt: skip

    # ------------------------------------------------------------------ inputs

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        """A Secret as the API returns it (data base64-encoded), or None when missing."""
        return await self._optional(
            f"get Secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace
        )

    async def get_node(self, name: str) -> Body | None:
        return await self._optional(f"get Node {name}", self.core.read_node, name)

    async def get_peering(self, name: str, namespace: str | None) -> Body | None:
        """kopf's peering object (``ClusterKopfPeering``, or ``KopfPeering`` in ``namespace``)."""
        if namespace is None:
            return await self._optional(
                f"get ClusterKopfPeering {name}", self.custom.get_cluster_custom_object,
                "kopf.dev", "v1", "clusterkopfpeerings", name,
            )  # fmt: skip
        return await self._optional(
            f"get KopfPeering {namespace}/{name}", self.custom.get_namespaced_custom_object,
            "kopf.dev", "v1", namespace, "kopfpeerings", name,
        )  # fmt: skip

    async def list_pod_metrics(self, namespace: str, label_selector: str) -> list[Body]:
        """``metrics.k8s.io/v1beta1`` PodMetrics of the pods matching ``label_selector``."""
        body = await self._call(
            f"list PodMetrics in {namespace}", self.custom.list_namespaced_custom_object,
            "metrics.k8s.io", "v1beta1", namespace, "pods", label_selector=label_selector,
        )  # fmt: skip
        items: list[Body] = body.get("items", [])
        return items
