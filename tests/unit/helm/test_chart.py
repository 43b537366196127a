"""The chart lints clean, renders what each setting promises, and refuses what it must."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import yaml

from carbonaware.config import OperatorSettings

from .helmchart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    REPO_ROOT,
    USER_ROLES,
    Helm,
    container,
    env_of,
    is_user_role,
    kinds,
    only,
    rbac_rules,
)

# A cold Go build cache makes the first helm build take minutes.
pytestmark = pytest.mark.timeout(1800)

NON_DEFAULT = (
    "replicaCount=2",
    "watchScope=ReleaseNamespace",
    "serviceMonitor.enabled=true",
    "dashboard.enabled=true",
)
VALUE_SETS = {
    "default": (),
    "non-default": NON_DEFAULT,
    "cluster-peered": ("replicaCount=3",),
    "namespaced": ("watchScope=ReleaseNamespace",),
}


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_is_clean(helm: Helm, values: tuple[str, ...]) -> None:
    args = ["lint", str(CHART), "--strict"]
    for value in values:
        args += ["--set", value]
    result = helm.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    problems = [
        line for line in result.stdout.splitlines() if re.search(r"\[(WARNING|ERROR)\]", line)
    ]
    assert problems == []


def test_kube_version_below_129_is_refused(helm: Helm) -> None:
    result = helm.run("template", "demo", str(CHART), "--kube-version", "1.28.9")
    assert result.returncode != 0
    assert "chart requires kubeVersion: >=1.29.0-0" in result.stderr
    assert helm.run("template", "demo", str(CHART), "--kube-version", "1.29.0").returncode == 0


# --------------------------------------------------------------------------- objects


def test_default_render_has_exactly_the_core_objects(helm: Helm) -> None:
    objects = helm.template()
    assert kinds(objects) == {
        "ServiceAccount",
        "ClusterRole",  # the operator's, and carbonaware-edit/-view for people
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "Pod",  # the `helm test` pod
        "Secret",  # the admission webhook's certificate
        "MutatingWebhookConfiguration",
    }
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_each_template_renders_at_most_one_object(helm: Helm) -> None:
    text = helm.template_text(*NON_DEFAULT)
    sources = re.findall(r"^# Source: (\S+)$", text, re.MULTILINE)
    assert len(sources) == len(set(sources)), sources


def test_pod_runs_with_the_restricted_security_context(helm: Helm) -> None:
    objects = helm.template()
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(objects)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place is an emptyDir on /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "hostPath" not in str(pod)


def test_the_helm_test_pod_is_restricted_too(helm: Helm) -> None:
    test_pod = only(helm.template(), "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (fetch,) = test_pod["spec"]["containers"]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    assert fetch["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    script = fetch["args"][0]
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:8080/metrics" in script
    assert "carbonaware_" in script
    compile(script, "test-metrics", "exec")  # the embedded script is valid Python


def test_liveness_probe_and_ports_match_the_settings(helm: Helm) -> None:
    objects = helm.template()
    operator = container(objects)
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    settings = OperatorSettings()
    assert ports == {
        "metrics": settings.metrics_port,
        "health": settings.health_port,
        "webhook": 9443,
    }
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(objects)
    assert env["CARBONAWARE_METRICS_PORT"]["value"] == str(settings.metrics_port)
    assert env["CARBONAWARE_HEALTH_PORT"]["value"] == str(settings.health_port)
    assert env["CARBONAWARE_WEBHOOK_PORT"]["value"] == "9443"
    service = only(objects, "Service")
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert service_ports["metrics"]["targetPort"] == "metrics"
    assert (service_ports["webhook"]["port"], service_ports["webhook"]["targetPort"]) == (
        443,
        "webhook",
    )
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert operator["args"] == ["run"]
    assert operator["image"] == "ghcr.io/carbon-aware-operator/carbon-aware-operator:0.1.0"


def settings_from(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> OperatorSettings:
    """OperatorSettings as the operator would read them from the rendered plain env values."""
    for name in [n for n in os.environ if n.startswith("CARBONAWARE_")]:
        monkeypatch.delenv(name)
    for name, item in env_of(objects).items():
        if name.startswith("CARBONAWARE_") and "value" in item:
            monkeypatch.setenv(name, item["value"])
    return OperatorSettings()


def test_every_rendered_setting_is_an_operator_setting(helm: Helm) -> None:
    fields = {f"CARBONAWARE_{name.upper()}" for name in OperatorSettings.model_fields}
    everything = (
        *NON_DEFAULT,
        "operator.releaseCapPerTick=5",
        "providers.ukci.baseUrl=http://ukci.test",
        "providers.electricityMaps.baseUrl=http://em.test",
        "providers.electricityMaps.tokenSecretRef.name=em",
        "providers.wattTime.baseUrl=http://wt.test",
        "providers.wattTime.username=me",
        "providers.wattTime.passwordSecretRef.name=wt",
        "providers.static.intensity=200",
        "ssh.allowedHosts={10.20.0.0/16,*.build.example.com}",
        "providers.trace.path=/data/trace.csv",
        "providers.trace.timeColumn=t",
        "providers.trace.actualColumn=a",
        "providers.trace.forecastColumn=f",
        "providers.trace.indexColumn=i",
        "measurement.prometheusUrl=http://prometheus.test:9090",
    )
    rendered = {n for n in env_of(helm.template(*everything)) if n.startswith("CARBONAWARE_")}
    assert rendered - fields == set(), "env vars the operator would ignore"


def test_default_values_become_the_operator_settings(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(helm.template(), monkeypatch)
    assert settings.tick_seconds == 60
    assert settings.default_region == "GB"
    # A live source by default, never the replayed trace (that is for demos and tests).
    assert settings.providers == "ukci,static"
    assert settings.static_intensity == 125
    assert settings.ssh_mode == "Pod"
    assert settings.trace_shift_to_now is True
    assert settings.namespace is None
    assert settings.peering_name is None
    # The SSH runner defaults to the operator image.
    assert settings.runner_image == container(helm.template())["image"]


def test_non_default_values_become_the_operator_settings(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm.template(
        "providers.chain={ukci,static}",
        "providers.static.table={" + ",".join(str(100 + h) for h in range(24)) + "}",
        "operator.tickSeconds=30",
        "operator.defaultRegion=DE",
        "operator.releaseCapPerTick=4",
        "ssh.mode=InProcess",
        "ssh.runnerImage=registry.test/runner:1",
        "measurement.prometheusUrl=http://prometheus.test:9090",
        "image.tag=9.9.9",
    )
    settings = settings_from(objects, monkeypatch)
    assert settings.providers == "ukci,static"
    assert settings.static_table == ",".join(str(100 + h) for h in range(24))
    assert settings.tick_seconds == 30
    assert settings.default_region == "DE"
    assert settings.release_cap_per_tick == 4
    assert settings.ssh_mode == "InProcess"
    assert settings.runner_image == "registry.test/runner:1"
    assert settings.prometheus_url == "http://prometheus.test:9090"
    assert container(objects)["image"].endswith(":9.9.9")


def test_tokens_come_from_secrets_never_from_values(helm: Helm) -> None:
    env = env_of(
        helm.template(
            "providers.electricityMaps.tokenSecretRef.name=grid-tokens",
            "providers.electricityMaps.tokenSecretRef.key=electricitymaps",
            "providers.wattTime.passwordSecretRef.name=grid-tokens",
        )
    )
    assert env["CARBONAWARE_ELECTRICITYMAPS_TOKEN"] == {
        "name": "CARBONAWARE_ELECTRICITYMAPS_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "grid-tokens", "key": "electricitymaps"}},
    }
    assert env["CARBONAWARE_WATTTIME_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "grid-tokens",
        "key": "password",
    }
    # Without a Secret named, no token variable at all.
    assert "CARBONAWARE_ELECTRICITYMAPS_TOKEN" not in env_of(helm.template())
    # A plain token value is not a key the chart accepts.
    error = helm.template_error("providers.electricityMaps.token=secret")
    assert "additional properties 'token' not allowed" in error
    error = helm.template_error("providers.wattTime.password=secret")
    assert "additional properties 'password' not allowed" in error


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("unknownKey=1", "unknownKey"),
        ("image.digest=sha256:abc", "digest"),
        ("serviceMonitor.enable=true", "enable"),
        ("providers.trace.file=/x.csv", "file"),
    ],
)
def test_schema_rejects_unknown_keys(helm: Helm, value: str, key: str) -> None:
    error = helm.template_error(value)
    assert "schema" in error
    assert f"additional properties '{key}' not allowed" in error


@pytest.mark.parametrize(
    "value",
    [
        "watchScope=Namespace",
        "providers.chain={carbonfree}",
        "ssh.mode=Ssh",
        "replicaCount=0",
        "providers.static.table={1,2,3}",
        "measurement.pue=0",
    ],
)
def test_schema_rejects_invalid_values(helm: Helm, value: str) -> None:
    error = helm.template_error(value)
    assert "values don't meet the specifications of the schema" in error


def test_every_schema_property_is_in_values_yaml() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if node.get("additionalProperties") is not False:
            return
        assert isinstance(value, dict), path
        assert set(node["properties"]) - {"global"} == set(value), path
        for name, child in node["properties"].items():
            if name != "global":
                walk(child, value[name], f"{path}.{name}")

    walk(schema, values, "")


# --------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rbac_has_no_wildcards_and_deletes_only_jobs(helm: Helm, values: tuple[str, ...]) -> None:
    rules = rbac_rules(helm.template(*values))
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(field, []), rule
            assert not any("*" in item for item in rule.get(field, [])), rule
        assert "nonResourceURLs" not in rule
        # Children are deleted by owner references and garbage collection; the exceptions
        # are a cancelled CarbonAwareJob's running Job (carbonaware.io/cancel) and a
        # CarbonAwareCronJob's runs (history limits, concurrencyPolicy Replace). Nothing else.
        if "delete" in rule["verbs"]:
            assert (rule["apiGroups"], rule["resources"]) in (
                (["batch"], ["jobs"]),
                (["carbonaware.io"], ["carbonawarejobs"]),
            ), rule
        assert "deletecollection" not in rule["verbs"], rule
        assert "pods/log" not in rule["resources"], rule
        assert "pods/exec" not in rule["resources"], rule
        # Secrets: read one by name, never list (that would read every Secret).
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"]


def commented_rules(text: str) -> list[tuple[str, str]]:
    """(previous line, rule line) for every rule start in RBAC YAML text."""
    lines = text.splitlines()
    pairs = []
    for index, line in enumerate(lines):
        if re.match(r"^\s*- apiGroups:", line):
            pairs.append((lines[index - 1], line))
    return pairs


def test_every_rule_in_the_templates_is_preceded_by_a_comment() -> None:
    templates = CHART / "templates"
    sources = {path.name: path.read_text() for path in templates.glob("*") if path.is_file()}
    with_rules = {
        name
        for name, text in sources.items()
        if "apiGroups:" in text and "kind: MutatingWebhookConfiguration" not in text
    }
    # The operator's rules live in one place, shared by the ClusterRole and the Role; the
    # roles for people have a template each.
    assert with_rules == {"_rbac.tpl", "clusterrole-edit.yaml", "clusterrole-view.yaml"}
    pairs = [pair for name in sorted(with_rules) for pair in commented_rules(sources[name])]
    assert len(pairs) >= 13
    for previous, rule in pairs:
        assert previous.lstrip().startswith("# "), f"no comment above {rule!r}"


def test_people_get_aggregated_edit_and_view_roles_on_our_resources_only(helm: Helm) -> None:
    objects = helm.template()
    roles = {obj["metadata"]["name"]: obj for obj in objects if is_user_role(obj)}
    assert set(roles) == set(USER_ROLES)
    edit_labels = roles["carbonaware-edit"]["metadata"]["labels"]
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    view_labels = roles["carbonaware-view"]["metadata"]["labels"]
    assert view_labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for role in roles.values():
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["carbonaware.io"], rule
            assert "*" not in rule["verbs"], rule
            assert "*" not in rule["resources"], rule
    view_verbs = {v for rule in roles["carbonaware-view"]["rules"] for v in rule["verbs"]}
    assert view_verbs == {"get", "list", "watch"}
    edit = grants(roles["carbonaware-edit"]["rules"])
    assert ("carbonaware.io", "carbonawarejobs", "create") in edit
    assert ("carbonaware.io", "carbonawarejobs/status", "patch") not in edit
    # A second release leaves them to the first.
    off = helm.template("rbac.userRoles.create=false")
    assert not any(is_user_role(obj) for obj in off)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_rule_is_preceded_by_a_comment(helm: Helm, values: tuple[str, ...]) -> None:
    text = helm.template_text(*values)
    documents = [
        doc for doc in text.split("\n---\n") if re.search(r"^kind: (Cluster)?Role$", doc, re.M)
    ]
    assert documents
    for document in documents:
        pairs = commented_rules(document)
        assert len(pairs) == len(yaml.safe_load(document)["rules"])
        for previous, rule in pairs:
            assert previous.lstrip().startswith("# "), f"no comment above {rule!r}"


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_scope_grants_what_the_operator_uses_cluster_wide(helm: Helm) -> None:
    objects = helm.template()
    role = only(objects, "ClusterRole")
    granted = grants(role["rules"])
    for needed in [
        ("carbonaware.io", "carbonawarejobs", "watch"),
        ("carbonaware.io", "servertargets/status", "patch"),
        ("carbonaware.io", "carbonawarejobs/status", "patch"),
        ("carbonaware.io", "carbonawarejobs", "create"),
        ("carbonaware.io", "carbonawarecronjobs", "watch"),
        ("carbonaware.io", "carbonawarecronjobs/status", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "patch"),
        ("batch", "jobs", "delete"),
        ("", "pods", "create"),
        ("", "secrets", "get"),
        ("", "events", "create"),
        ("", "nodes", "get"),
        ("metrics.k8s.io", "pods", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ]:
        assert needed in granted, needed
    # Cluster-wide kopf serves every namespace without listing them.
    assert not any(resource == "namespaces" for _, resource, _ in granted)
    assert not any(group == "kopf.dev" for group, _, _ in granted)
    binding = only(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    assert "CARBONAWARE_NAMESPACE" not in env_of(objects)


def test_release_namespace_scope_uses_a_role(helm: Helm) -> None:
    objects = helm.template("watchScope=ReleaseNamespace")
    role = only(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    namespaced = grants(role["rules"])
    assert ("carbonaware.io", "carbonawarejobs", "watch") in namespaced
    assert ("", "secrets", "get") in namespaced
    assert ("batch", "jobs", "create") in namespaced
    # The ClusterRole keeps only cluster-scoped reads.
    cluster = grants(only(objects, "ClusterRole")["rules"])
    assert {resource for _, resource, _ in cluster} == {
        "nodes",
        "customresourcedefinitions",
        "namespaces",
    }
    assert {verb for _, _, verb in cluster} <= {"get", "list", "watch"}
    binding = only(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["kind"] == "Role"
    env = env_of(objects)
    assert env["CARBONAWARE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_rbac_can_be_left_to_the_cluster_admin(helm: Helm) -> None:
    objects = helm.template(
        "rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=ops"
    )
    assert kinds(objects) == {
        "Service", "Deployment", "Pod", "Secret", "MutatingWebhookConfiguration"
    }  # fmt: skip
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# --------------------------------------------------------------------------- peering


def test_single_replica_runs_standalone(helm: Helm) -> None:
    objects = helm.template()
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "CARBONAWARE_PEERING_NAME" not in env_of(objects)
    assert not {"CustomResourceDefinition", "ClusterKopfPeering", "KopfPeering"} & kinds(objects)


def test_replicas_share_a_cluster_peering(helm: Helm) -> None:
    objects = helm.template("replicaCount=2")
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    env = env_of(objects)
    assert env["CARBONAWARE_PEERING_NAME"]["value"] == FULLNAME
    # kopf names each replica after its pod in the peering object.
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    crd = only(objects, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    assert crd["spec"]["scope"] == "Cluster"
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    peering = only(objects, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == FULLNAME
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    granted = grants(only(objects, "ClusterRole")["rules"])
    assert ("kopf.dev", "clusterkopfpeerings", "watch") in granted
    (patch_rule,) = [
        r
        for r in only(objects, "ClusterRole")["rules"]
        if "patch" in r["verbs"] and r["apiGroups"] == ["kopf.dev"]
    ]
    assert patch_rule["resourceNames"] == [FULLNAME]


def test_namespaced_replicas_share_a_namespaced_peering(helm: Helm) -> None:
    objects = helm.template("replicaCount=2", "watchScope=ReleaseNamespace")
    crd = only(objects, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "kopfpeerings.kopf.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    peering = only(objects, "KopfPeering")
    assert peering["metadata"]["namespace"] == NAMESPACE
    assert ("kopf.dev", "kopfpeerings", "list") in grants(only(objects, "Role")["rules"])
    assert not any(
        group == "kopf.dev" for group, _, _ in grants(only(objects, "ClusterRole")["rules"])
    )


def test_peering_crd_can_be_left_to_another_release(helm: Helm) -> None:
    objects = helm.template("replicaCount=2", "peering.installCRD=false")
    assert "CustomResourceDefinition" not in kinds(objects)
    assert only(objects, "ClusterKopfPeering")["metadata"]["name"] == FULLNAME


# --------------------------------------------------------------------------- integrations


def test_integrations_are_off_by_default_and_on_with_one_switch(helm: Helm) -> None:
    assert not {"ServiceMonitor", "ConfigMap"} & kinds(helm.template())
    monitor = only(helm.template("serviceMonitor.enabled=true"), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    # Our `namespace` label must survive the scrape (not become exported_namespace).
    assert endpoint["honorLabels"] is True
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    dashboard = only(helm.template("dashboard.enabled=true"), "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "carbon-aware-operator.json").read_text()
    assert dashboard["data"]["carbon-aware-operator.json"] == shipped.rstrip("\n")


def test_dashboard_sidecar_label_and_namespace_are_configurable(helm: Helm) -> None:
    objects = helm.template(
        "dashboard.enabled=true",
        "dashboard.labelName=dashboards",
        "dashboard.labelValue=carbon",
        "dashboard.namespace=monitoring",
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=kube-prometheus-stack",
    )
    configmap = only(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["dashboards"] == "carbon"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["namespace"] == "monitoring"
    labels = only(objects, "ServiceMonitor")["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"


# --------------------------------------------------------------------------- CRDs


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = {path.name: path.read_bytes() for path in (REPO_ROOT / "crds").glob("*.yaml")}
    chart = {path.name: path.read_bytes() for path in (CHART / "crds").iterdir()}
    assert top
    assert chart.keys() == top.keys()
    for name, content in top.items():
        assert chart[name] == content, (
            f"helm/carbon-aware-operator/crds/{name} differs from crds/{name}"
        )
