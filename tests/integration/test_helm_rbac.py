"""The Helm chart's RBAC on the real local control plane: enough for the operator, and no more.

The chart is linted and installed with the pinned helm (``hack/localplane.py`` builds it) into
the local control plane, twice: a single replica (the default) and two peered replicas
(``replicaCount=2``: kopf peering, with its own rules). The Deployments' pods cannot really run
on the kwok nodes; what matters are the ServiceAccounts, ClusterRoles and bindings. The
operator then runs as a local process authenticated only with a token of a release's
ServiceAccount (TokenRequest API, ``kubectl create token``) in a kubeconfig holding nothing
else: no admin credentials.

One scenario exercises every permission in a few seconds (grid constant at 300 gCO2e/kWh): a
held Threshold job, an Immediate job that runs and is measured, an SSH job (runner pod mode)
on a ServerTarget at a closed port with its key in a Secret, a managed plain Job, a job
whose Job name is taken by someone else's Job, a CarbonAwareCronJob whose window is always
open (it runs at once and keeps no finished run), and a plain Job an Enforce CarbonAwarePolicy
governs through the operator's admission webhook (the chart's configuration pointed at the
operator process, as in test_policies.py). Objects created after the operator started
("late") need its watches; a peer with a higher priority appearing in the peering object needs
kopf's peering watch. Each permission is tied to an effect the scenario produces with the
chart's RBAC (the baseline runs check them all, and also take a held job to Succeeded) and to
the evidence of its absence: the API server refusing exactly that verb on that resource, in
the operator's log or an object's status.

The parametrized test removes one verb of one resource from a release's ClusterRole, runs the
scenario, and stops once the refusal has shown up and the effect has stayed absent for as
long as the baseline needed to produce it, plus a margin. If the effect appears anyway, the
permission is not needed and the test fails. The cases must cover every grant the chart
renders, so a new rule cannot go untested.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api import labels
from carbonaware.runners.jobs import child_name

from .operatorproc import (
    CRD_NAMES,
    REPO_ROOT,
    OperatorProcess,
    caj,
    cron_job,
    free_port,
    long_job_template,
    operator_env,
    suspended_job,
)
from .rbaccases import (
    CANCEL,
    CLUSTER_CASES,
    CORE,
    EFFECTS,
    HIGHER_PEER,
    LATE_OBJECTS,
    PEERING_CASES,
    POLICY_JOB,
    POLICY_WEBHOOK_PORT,
    Effect,
    Grant,
    Snapshot,
    grants_of,
    rules_without,
    state,
)
from .ukapi import UkApiServer, serve_uk_api
from .webhookbed import NAMESPACE_LABEL, local_configuration, write_certificate

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "carbon-aware-operator"
KEY_SECRET = "server-key"
POLL_SECONDS = 0.25
# How long a baseline may take to produce all its effects.
BASELINE_TIMEOUT = 90.0
# A case waits at most this long for the refusal to show up.
EVIDENCE_TIMEOUT = 45.0
# After the refusal, an effect must stay absent this much longer than the baseline needed.
ABSENCE_MARGIN = 3.0
OPERATOR_PRIORITY = 100  # our peered operator; the injected peer outranks it
HIGHER_PRIORITY = 1000

# --------------------------------------------------------------------------- releases


@dataclass
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.kubeconfig),
            "KUBE_FEATURE_WatchListClient": "false",
        }
        result = subprocess.run(
            [str(self.binary), *args], env=env, capture_output=True, text=True, timeout=180
        )
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
        return result


@dataclass
class Release:
    name: str
    namespace: str
    cluster_role: dict[str, Any]  # as installed
    kubeconfig: Path  # the ServiceAccount's token, the plane's CA and server; nothing else
    peering: str | None  # the peering object's name when peered
    webhook_certificates: Path  # the admission webhook's certificate (the same for both)

    @property
    def fullname(self) -> str:
        return f"{self.name}-carbon-aware-operator"

    @property
    def rules(self) -> list[dict[str, Any]]:
        return list(self.cluster_role["rules"])


@pytest.fixture(scope="module")
def helm(local_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(local_plane.binaries.helm, tmp_path_factory.mktemp("helm"), local_plane.kubeconfig)


def install(plane: Any, helm: Helm, name: str, directory: Path, *values: str) -> Release:
    namespace = f"{name}-{secrets.token_hex(3)}"
    settings = [arg for value in values for arg in ("--set", value)]
    helm.run("install", name, str(CHART), "--namespace", namespace, "--create-namespace",
             *settings)  # fmt: skip
    fullname = f"{name}-carbon-aware-operator"
    # The chart's webhook configuration calls its Service, whose pods cannot run on kwok nodes:
    # the module's own (``policy_webhook``) calls the scenario's operator process instead.
    plane.kubectl("delete", "mutatingwebhookconfiguration", fullname)
    for crd in CRD_NAMES:
        plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    token = plane.kubectl(
        "create", "token", fullname, "-n", namespace, "--duration=3600s"
    ).stdout.strip()
    kubeconfig = directory / f"{name}.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "plane", "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.pki / "ca.crt"),
                }}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator",
                              "context": {"cluster": "plane", "user": "operator"}}],
                "current-context": "operator",
            }
        )
    )  # fmt: skip
    role = plane.kubectl_json("get", "clusterrole", fullname)
    peered = "replicaCount=2" in values
    certificates = directory / "webhook"
    return Release(name, namespace, role, kubeconfig, fullname if peered else None, certificates)


@pytest.fixture(scope="module")
def releases(
    local_plane: Any, helm: Helm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Release]]:
    """The chart installed twice: ``cluster`` (defaults) and ``peered`` (two replicas)."""
    directory = tmp_path_factory.mktemp("releases")
    installed: dict[str, Release] = {}
    ca = write_certificate(directory / "webhook")
    webhook = local_configuration(helm.binary, POLICY_WEBHOOK_PORT, ca)
    try:
        installed["cluster"] = install(local_plane, helm, "rbac", directory)
        installed["peered"] = install(
            local_plane,
            helm,
            "rbacpeer",
            directory,
            "replicaCount=2",
            "rbac.userRoles.create=false",
        )
        local_plane.apply(webhook)
        yield installed
    finally:
        local_plane.kubectl("delete", "mutatingwebhookconfiguration",
                            webhook["metadata"]["name"], "--ignore-not-found")  # fmt: skip
        for release in installed.values():
            helm.run("uninstall", release.name, "--namespace", release.namespace, check=False)
            local_plane.delete_namespace(release.namespace)


# --------------------------------------------------------------------------- running it


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A throwaway key: the ServerTargets point at closed ports, nothing logs in with it."""
    path = tmp_path_factory.mktemp("key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path.read_text()


class Grid:
    def __init__(self) -> None:
        self.now = 300.0

    def __call__(self, start: datetime) -> float:
        return self.now


@pytest.fixture(scope="module")
def grid() -> Iterator[tuple[Grid, UkApiServer]]:
    intensity = Grid()
    with serve_uk_api(intensity) as server:
        yield intensity, server


def server_target(name: str) -> dict[str, Any]:
    """A ServerTarget at a port nothing listens on: probes are refused (Unreachable)."""
    spec = {"host": "127.0.0.1", "port": free_port(), "user": "batch",
            "privateKeySecretRef": {"name": KEY_SECRET}, "hostKeyPolicy": "AcceptAny"}  # fmt: skip
    return {"apiVersion": "carbonaware.io/v1alpha1", "kind": "ServerTarget",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def early_objects(ssh_key: str) -> list[dict[str, Any]]:
    immediate = {"policy": "Immediate"}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": KEY_SECRET},
         "type": "kubernetes.io/ssh-auth", "stringData": {"ssh-privatekey": ssh_key}},
        server_target("srv"),
        caj("held", {"policy": "Threshold", "maxIntensity": 100}),
        caj("now", immediate),
        caj("long", immediate, jobTemplate=long_job_template()),
        caj("ssh", immediate, ssh={"targetRef": {"name": "srv"}, "command": "true"}),
        suspended_job("plain", labels={labels.MANAGED: "true"},
                      annotations={"carbonaware.io/policy": "Immediate"}),
        # Someone else's Job, with the name the operator derives for the next job's Job.
        suspended_job(child_name("clash")),
        caj("clash", immediate),
        rbac_cron_job("cron"),
        {"apiVersion": "carbonaware.io/v1alpha1", "kind": "CarbonAwarePolicy",
         "metadata": {"name": "rbac-policy"},
         "spec": {"mode": "Enforce", "selector": {"matchLabels": {"governed": "yes"}},
                  "schedule": {"policy": "Threshold", "maxIntensity": 100}}},
    ]  # fmt: skip


def rbac_cron_job(name: str) -> dict[str, Any]:
    """A cron job whose window is always open (every minute, a minute before): it runs at once,
    and its finished run is deleted (no history kept)."""
    return cron_job(name, "* * * * *", caj("run", {"policy": "Immediate"}),
                    windowBeforeSeconds=60, successfulJobsHistoryLimit=0)  # fmt: skip


def late_objects() -> list[dict[str, Any]]:
    immediate = {"policy": "Immediate"}
    return [
        server_target("late-srv"),
        caj("late-held", {"policy": "Threshold", "maxIntensity": 100}),
        caj("late-now", immediate),
        # Its own target: "srv" is busy with the early SSH job's runner pod (maxConcurrent 1).
        caj("late-ssh", immediate, ssh={"targetRef": {"name": "late-srv"}, "command": "true"}),
        rbac_cron_job("late-cron"),
    ]  # fmt: skip


@dataclass
class Scenario:
    """One run of the operator, as a release's ServiceAccount, on a fresh namespace."""

    plane: Any
    release: Release
    namespace: str
    operator: OperatorProcess
    started: float = field(default_factory=time.monotonic)
    triggered: dict[str, float] = field(default_factory=dict)

    def apply(self, items: list[dict[str, Any]]) -> None:
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.plane.kubectl("apply", "-n", self.namespace, "-f", "-", input=listing)

    def trigger(self, name: str) -> None:
        """Start what a late effect needs, once; remember when."""
        if name in self.triggered:
            return
        if name == LATE_OBJECTS:
            self.apply(late_objects())
        elif name == CANCEL:
            self.plane.kubectl("annotate", "caj", "long", f"{labels.CANCEL}=true",
                               "-n", self.namespace)  # fmt: skip
        elif name == POLICY_JOB:
            job = suspended_job("governed", labels={"governed": "yes"})
            job["spec"]["suspend"] = False  # a plain Job as teams write it: the policy holds it
            self.apply([job])
        elif name == HIGHER_PEER:
            assert self.release.peering, "a higher-priority peer needs a peered release"
            peer = {"priority": HIGHER_PRIORITY, "lifetime": 120,
                    "lastseen": datetime.now(UTC).isoformat()}  # fmt: skip
            patch = json.dumps({"status": {"zz-peer": peer}})
            self.plane.kubectl("patch", "clusterkopfpeering", self.release.peering,
                               "--type=merge", "-p", patch)  # fmt: skip
        else:
            raise AssertionError(f"unknown trigger {name}")
        self.triggered[name] = time.monotonic()

    def snapshot(self) -> Snapshot:
        """Our objects, the Jobs, pods and Events of the namespace, the peering status and the
        log, all at once."""
        listed = self.plane.kubectl_json(
            "get",
            "carbonawarejobs,carbonawarecronjobs,carbonawarepolicies,servertargets,jobs,pods,"
            "events",
            "-n",
            self.namespace,
        )
        objects = {(o["kind"], o["metadata"]["name"]): o for o in listed["items"]}
        peering: dict[str, Any] = {}
        if self.release.peering:
            body = self.plane.kubectl_json("get", "clusterkopfpeering", self.release.peering)
            peering = dict(body.get("status") or {})
        return Snapshot(self.namespace, objects, self.operator.log(), peering, self.operator.pid)

    def since(self, effect: Effect) -> float | None:
        """Seconds since the effect could start happening (None: its trigger is not started)."""
        origin = self.triggered.get(effect.after) if effect.after else self.started
        return None if origin is None else time.monotonic() - origin


def operator_environment(release: Release, server: UkApiServer) -> dict[str, str]:
    settings: dict[str, Any] = {}
    if release.peering:
        settings = {"peering_name": release.peering, "peering_priority": OPERATOR_PRIORITY}
    env = operator_env(
        release.kubeconfig,
        providers="ukci",
        ukci_base_url=server.url,
        provider_cache_ttl_seconds=1,
        default_region="GB",
        ssh_mode="Pod",
        runner_image="busybox",
        ssh_probe_seconds=2,
        webhook_port=POLICY_WEBHOOK_PORT,
        webhook_address="127.0.0.1",
        webhook_cert_dir=release.webhook_certificates,
        **settings,
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never in-cluster credentials
    return env


def start_scenario(
    plane: Any, release: Release, server: UkApiServer, ssh_key: str, log: Path,
    *, verbose: bool = False,
) -> Scenario:  # fmt: skip
    if release.peering:
        # Forget the peers of earlier runs (killed, so still "alive" for their lifetime).
        plane.kubectl("patch", "clusterkopfpeering", release.peering, "--type=merge",
                      "-p", json.dumps({"status": None}))  # fmt: skip
    namespace = plane.create_namespace("rbac")
    plane.kubectl("label", "namespace", namespace, f"{NAMESPACE_LABEL}=on")
    args = ("--verbose",) if verbose else ()
    operator = OperatorProcess(operator_environment(release, server), log, *args)
    scenario = Scenario(plane, release, namespace, operator)
    operator.start()
    scenario.apply(early_objects(ssh_key))
    return scenario


def stop_scenario(scenario: Scenario) -> None:
    scenario.operator.kill()
    scenario.plane.delete_namespace(scenario.namespace)
    if scenario.release.peering:
        scenario.plane.kubectl("patch", "clusterkopfpeering", scenario.release.peering,
                               "--type=merge", "-p", json.dumps({"status": None}))  # fmt: skip


def replace_cluster_role(plane: Any, release: Release, rules: list[dict[str, Any]]) -> None:
    meta = release.cluster_role["metadata"]
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {k: v for k, v in meta.items() if k in ("name", "labels", "annotations")},
        "rules": rules,
    }
    plane.kubectl("replace", "-f", "-", input=json.dumps(body))


def can_i(plane: Any, release: Release, grant: Grant, namespace: str = "default") -> bool:
    """The API server's own answer (a SelfSubjectAccessReview as the ServiceAccount), for an
    object the rules name if they name one."""
    resource, _, subresource = grant.resource.partition("/")
    attributes = {"group": grant.group, "resource": resource, "subresource": subresource,
                  "verb": grant.verb, "namespace": namespace}  # fmt: skip
    names = [
        name
        for rule in release.rules
        if grant in grants_of([rule])
        for name in rule.get("resourceNames", [])
    ]
    if names:
        attributes["name"] = names[0]
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}  # fmt: skip
    # No client-side validation: it lists CRDs, which some cases take away.
    answer = plane.kubectl(f"--kubeconfig={release.kubeconfig}", "create", "--validate=false",
                           "-f", "-", "-o", "json", input=json.dumps(review))  # fmt: skip
    return bool(json.loads(answer.stdout)["status"].get("allowed"))


def wait_until(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(POLL_SECONDS)


# --------------------------------------------------------------------------- baselines


@dataclass
class Baseline:
    """Seconds each effect took to appear (from the start, or from its trigger), with the
    chart's RBAC as installed; and the operator's log."""

    seconds: dict[str, float]
    log: str


VARIANT_EFFECTS = {
    "cluster": {case.effect for case in CLUSTER_CASES.values() if case.effect},
    "peered": {case.effect for case in PEERING_CASES.values() if case.effect},
}


def run_baseline(
    plane: Any, release: Release, grid: tuple[Grid, UkApiServer], ssh_key: str, log: Path,
    wanted: set[str],
) -> Baseline:  # fmt: skip
    intensity, server = grid
    scenario = start_scenario(plane, release, server, ssh_key, log)
    seconds: dict[str, float] = {}
    try:
        deadline = time.monotonic() + BASELINE_TIMEOUT
        while set(seconds) != wanted and time.monotonic() < deadline:
            snapshot = scenario.snapshot()
            early_done = all(n in seconds for n in wanted if not EFFECTS[n].after)
            for name in sorted(wanted - set(seconds)):
                effect = EFFECTS[name]
                if effect.after and (
                    effect.ready(snapshot) if effect.ready is not None else early_done
                ):
                    scenario.trigger(effect.after)
                elapsed = scenario.since(effect)
                if elapsed is not None and effect.seen(snapshot):
                    seconds[name] = elapsed
            time.sleep(POLL_SECONDS)
        missing = {name: EFFECTS[name].what for name in wanted - set(seconds)}
        assert not missing, f"with the chart's RBAC these never happened: {missing}"
        if not release.peering:
            # The held job is released when the grid gets clean, and followed to Succeeded.
            assert state(scenario.snapshot(), "held") == "Held"
            intensity.now = 50.0
            assert wait_until(lambda: state(scenario.snapshot(), "held") == "Succeeded", 60)
        return Baseline(seconds, scenario.operator.log())
    finally:
        intensity.now = 300.0
        stop_scenario(scenario)
        print(scenario.operator.log()[-20000:])


@pytest.fixture(scope="module")
def baselines(
    local_plane: Any, releases: dict[str, Release], grid: tuple[Grid, UkApiServer],
    ssh_key: str, tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Baseline]:  # fmt: skip
    directory = tmp_path_factory.mktemp("baselines")
    return {
        variant: run_baseline(local_plane, releases[variant], grid, ssh_key,
                              directory / f"{variant}.log", VARIANT_EFFECTS[variant])
        for variant in ("cluster", "peered")
    }  # fmt: skip


# --------------------------------------------------------------------------- tests


def test_chart_lints_clean_and_installs(
    local_plane: Any, helm: Helm, releases: dict[str, Release]
) -> None:
    lint = helm.run("lint", str(CHART), "--strict")
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout, lint.stdout
    assert "[ERROR]" not in lint.stdout
    assert "[WARNING]" not in lint.stdout
    for release in releases.values():
        listed = helm.run("list", "--namespace", release.namespace, "--output", "json")
        (installed,) = json.loads(listed.stdout)
        assert (installed["name"], installed["status"]) == (release.name, "deployed")
        for kind in ("serviceaccount", "deployment", "service"):
            local_plane.kubectl("get", kind, release.fullname, "-n", release.namespace)
        binding = local_plane.kubectl_json("get", "clusterrolebinding", release.fullname)
        assert binding["roleRef"]["name"] == release.fullname
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": release.fullname, "namespace": release.namespace}
        ]
    peering = releases["peered"].peering
    assert peering
    local_plane.kubectl("get", "clusterkopfpeering", peering)


def test_the_operator_authenticates_as_the_service_account_only(
    local_plane: Any, releases: dict[str, Release], grid: tuple[Grid, UkApiServer]
) -> None:
    release = releases["cluster"]
    config = json.loads(release.kubeconfig.read_text())
    (user,) = config["users"]
    assert set(user["user"]) == {"token"}  # no client certificate, no exec plugin
    whoami = local_plane.kubectl(f"--kubeconfig={release.kubeconfig}", "auth", "whoami",
                                 "-o", "json")  # fmt: skip
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{release.namespace}:{release.fullname}"
    env = operator_environment(release, grid[1])
    assert env["KUBECONFIG"] == str(release.kubeconfig)
    assert "KUBERNETES_SERVICE_HOST" not in env
    # RBAC applies to the token: it cannot do what the admin can.
    assert not can_i(local_plane, release, Grant(CORE, "secrets", "list"))


@pytest.mark.parametrize("variant", ["cluster", "peered"])
def test_the_chart_rbac_is_enough(variant: str, baselines: dict[str, Baseline]) -> None:
    """Every effect happened with the chart's RBAC (the fixture waits for them; the single
    replica also took the held job from Held to Succeeded), and nothing was refused."""
    baseline = baselines[variant]
    assert set(baseline.seconds) == VARIANT_EFFECTS[variant]
    assert not re.search(r"cannot \w+ resource", baseline.log)
    assert "Not enough permissions" not in baseline.log
    print(variant, {name: round(value, 1) for name, value in sorted(baseline.seconds.items())})


def test_every_rendered_grant_has_a_case(releases: dict[str, Release]) -> None:
    cluster = grants_of(releases["cluster"].rules)
    assert cluster == set(CLUSTER_CASES)
    assert grants_of(releases["peered"].rules) == cluster | set(PEERING_CASES)


ALL_CASES = [("cluster", grant) for grant in sorted(CLUSTER_CASES)] + [
    ("peered", grant) for grant in sorted(PEERING_CASES)
]


@pytest.mark.parametrize(("variant", "grant"), ALL_CASES, ids=[f"{v}-{g}" for v, g in ALL_CASES])
def test_each_grant_is_needed(
    variant: str,
    grant: Grant,
    local_plane: Any,
    releases: dict[str, Release],
    baselines: dict[str, Baseline],
    grid: tuple[Grid, UkApiServer],
    ssh_key: str,
    tmp_path: Path,
) -> None:
    release = releases[variant]
    spec = {**CLUSTER_CASES, **PEERING_CASES}[grant]
    effect = EFFECTS[spec.effect] if spec.effect else None
    absent_for = baselines[variant].seconds[spec.effect] + ABSENCE_MARGIN if spec.effect else 0.0
    replace_cluster_role(local_plane, release, rules_without(release.rules, grant))
    scenario: Scenario | None = None
    try:
        assert wait_until(lambda: not can_i(local_plane, release, grant), 10)
        scenario = start_scenario(local_plane, release, grid[1], ssh_key,
                                  tmp_path / "operator.log", verbose=spec.verbose)  # fmt: skip
        evidence = spec.evidence(scenario.namespace)
        refused_at: float | None = None
        while True:
            snapshot = scenario.snapshot()
            elapsed = time.monotonic() - scenario.started
            if effect is not None and effect.seen(snapshot):
                pytest.fail(f"without {grant}, {effect.what} all the same: the rule is not needed")
            if effect is not None and effect.after and effect.ready and effect.ready(snapshot):
                scenario.trigger(effect.after)
            if refused_at is None and evidence.search(snapshot.texts()):
                refused_at = elapsed
                if effect is not None and effect.after:
                    scenario.trigger(effect.after)
            absent = (scenario.since(effect) or 0.0) if effect is not None else 0.0
            if refused_at is not None and absent >= absent_for:
                break
            assert elapsed < EVIDENCE_TIMEOUT or refused_at is not None, (
                f"without {grant}: no refusal matching {evidence.pattern!r} within "
                f"{EVIDENCE_TIMEOUT:.0f} s\n{snapshot.log[-5000:]}"
            )
            time.sleep(POLL_SECONDS)
        print(f"{variant} {grant}: refused after {refused_at:.1f} s; "
              f"{spec.effect or 'nothing else'} absent for {absent:.1f} s")  # fmt: skip
    finally:
        if scenario is not None:
            stop_scenario(scenario)
        replace_cluster_role(local_plane, release, release.rules)
        assert wait_until(lambda: can_i(local_plane, release, grant), 10)
