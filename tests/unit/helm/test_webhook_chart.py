"""The chart's admission webhook: on by default, failing open, its certificate and
configuration agreeing with each other and with the operator's settings and handler path."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509

from carbonaware.handlers.admission import WEBHOOK_ID

from .helmchart import FULLNAME, NAMESPACE, Helm, container, env_of, only

pytestmark = pytest.mark.timeout(1800)


def webhook_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (hook,) = only(objects, "MutatingWebhookConfiguration")["webhooks"]
    return dict(hook)


def test_the_webhook_fails_open_on_job_creation_only(helm: Helm) -> None:
    hook = webhook_of(helm.template())
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert 1 <= hook["timeoutSeconds"] <= 10
    assert hook["rules"] == [
        {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs"],
         "operations": ["CREATE"], "scope": "Namespaced"},
    ]  # fmt: skip
    service = hook["clientConfig"]["service"]
    assert (service["name"], service["namespace"], service["port"]) == (FULLNAME, NAMESPACE, 443)
    assert service["path"] == f"/{WEBHOOK_ID}"  # kopf serves each handler at /<its id>
    expressions = hook["objectSelector"]["matchExpressions"]
    assert {"key": "carbonaware.io/managed", "operator": "DoesNotExist"} in expressions
    assert {"key": "carbonaware.io/exempt", "operator": "NotIn", "values": ["true"]} in expressions


def test_system_namespaces_are_left_out_and_a_namespaced_release_sends_only_its_own(
    helm: Helm,
) -> None:
    (rule,) = webhook_of(helm.template("webhook.excludeNamespaces={ci}"))["namespaceSelector"][
        "matchExpressions"
    ]
    assert rule == {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", "kube-node-lease", "ci"],
    }
    (rule,) = webhook_of(helm.template("watchScope=ReleaseNamespace"))["namespaceSelector"][
        "matchExpressions"
    ]
    assert rule == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [NAMESPACE]}


def test_the_serving_certificate_is_signed_by_the_ca_the_configuration_trusts(helm: Helm) -> None:
    objects = helm.template()
    secret = only(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    ca_bundle = webhook_of(objects)["clientConfig"]["caBundle"]
    assert ca_bundle == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(ca_bundle))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{FULLNAME}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)


def test_the_operator_serves_the_webhook_from_the_mounted_secret(helm: Helm) -> None:
    objects = helm.template()
    env = env_of(objects)
    operator = container(objects)
    (mount,) = [m for m in operator["volumeMounts"] if m["name"] == "webhook-tls"]
    assert env["CARBONAWARE_WEBHOOK_CERT_DIR"]["value"] == mount["mountPath"]
    assert mount["readOnly"] is True
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-tls"]
    assert volume["secret"]["secretName"] == only(objects, "Secret")["metadata"]["name"]


def test_one_switch_turns_the_webhook_off(helm: Helm) -> None:
    objects = helm.template("webhook.enabled=false")
    assert not [o for o in objects if o["kind"] in ("Secret", "MutatingWebhookConfiguration")]
    assert "CARBONAWARE_WEBHOOK_PORT" not in env_of(objects)
    ports = [p["name"] for p in only(objects, "Service")["spec"]["ports"]]
    assert ports == ["metrics"]
    # Nor the one permission only the webhook uses.
    rules = only(objects, "ClusterRole")["rules"]
    assert not [r for r in rules if "carbonawarepolicies" in r["resources"]]
    rules = only(helm.template(), "ClusterRole")["rules"]
    (policies,) = [r for r in rules if "carbonawarepolicies" in r["resources"]]
    assert policies["verbs"] == ["list"]
