"""What the Helm chart's RBAC grants, what breaks without each grant, and how the API
server's refusal of it shows: the catalogue the RBAC test (``test_helm_rbac.py``) removes one
grant at a time from, and the snapshot of the scenario its effects are read from."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carbonaware.api import labels
from carbonaware.runners.jobs import child_name

from .operatorproc import (
    free_port,
    status_condition,
)
from .webhookbed import serving

KOPF_ANNOTATION = f"{labels.KOPF_PREFIX}/last-handled-configuration"

# --------------------------------------------------------------------------- grants


@dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource (``group`` "" is the core API group)."""

    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.resource}{'.' + self.group if self.group else ''}:{self.verb}"


def grants_of(rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        Grant(group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rules_without(rules: list[dict[str, Any]], removed: Grant) -> list[dict[str, Any]]:
    """The same rules with one verb of one resource taken out (a rule is split where needed;
    resourceNames stay)."""
    result = []
    for rule in rules:
        if removed not in grants_of([rule]):
            result.append(rule)
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs = [v for v in rule["verbs"] if Grant(group, resource, v) != removed]
                if verbs:
                    result.append(
                        {**rule, "apiGroups": [group], "resources": [resource], "verbs": verbs}
                    )
    assert grants_of(result) == grants_of(rules) - {removed}
    return result


def refusal(grant: Grant, *, in_namespace: bool) -> Callable[[str], re.Pattern[str]]:
    """The API server refusing exactly this verb on this resource (in the scenario's
    namespace, for requests about objects there)."""

    def pattern(namespace: str) -> re.Pattern[str]:
        text = (
            rf'cannot {grant.verb} resource \\?"{re.escape(grant.resource)}\\?" '
            rf'in API group \\?"{re.escape(grant.group)}\\?"'
        )
        if in_namespace:
            text += rf' in the namespace \\?"{re.escape(namespace)}\\?"'
        return re.compile(text)

    return pattern


# --------------------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Snapshot:
    namespace: str
    objects: dict[tuple[str, str], dict[str, Any]]
    log: str
    peering: dict[str, Any]  # the status of the release's peering object (peered only)
    pid: int

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects.get((kind, name)) or {}

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status") or {})

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for (k, _), obj in self.objects.items() if k == kind]

    def texts(self) -> str:
        """Where a refusal may be recorded: the operator's log and our objects' statuses."""
        kinds = ("CarbonAwareJob", "ServerTarget", "CarbonAwareCronJob")
        statuses = [obj.get("status") for kind in kinds for obj in self.of_kind(kind)]
        return self.log + "\n" + json.dumps(statuses)


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def owned_pods(s: Snapshot, kind: str, name: str) -> list[dict[str, Any]]:
    return [
        pod
        for pod in s.of_kind("Pod")
        if any(
            ref.get("kind") == kind and ref.get("name") == name
            for ref in pod["metadata"].get("ownerReferences") or []
        )
    ]


def events_about(s: Snapshot, name: str) -> set[str]:
    return {
        event["reason"]
        for event in s.of_kind("Event")
        if event["involvedObject"]["name"] == name
        and (event.get("source") or {}).get("component") == "carbon-aware-operator"
    }


def held(s: Snapshot, name: str) -> bool:
    found = status_condition(s.status("CarbonAwareJob", name), "Held")
    return found is not None and found["status"] == "True"


def probed(s: Snapshot, name: str) -> bool:
    return bool(s.status("ServerTarget", name).get("lastProbeTime"))


def state(s: Snapshot, name: str) -> str | None:
    return s.status("CarbonAwareJob", name).get("state")


def governed_and_suspended(job: dict[str, Any]) -> bool:
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return bool((job.get("spec") or {}).get("suspend")) and (
        annotations.get(labels.GOVERNING_POLICY) == "rbac-policy"
    )


LATE_OBJECTS = "late objects"  # created once the refusal is seen (or the early effects are)
CANCEL = "cancel"  # the running job "long" is cancelled once its Job exists
HIGHER_PEER = "higher-priority peer"  # a peer that outranks the operator joins the peering
POLICY_JOB = "policy job"  # a plain Job a policy governs, once the webhook serves
POLICY_WEBHOOK_PORT = free_port()  # the scenario operators' admission webhook, one at a time


@dataclass(frozen=True)
class Effect:
    what: str
    seen: Callable[[Snapshot], bool]
    after: str | None = None  # the trigger it needs; its time counts from the trigger
    ready: Callable[[Snapshot], bool] | None = None  # pulls the trigger itself when true


EFFECTS: dict[str, Effect] = {
    "held": Effect("the Threshold job is held (Held condition)", lambda s: held(s, "held")),
    "kopf-annotation": Effect(
        "kopf records the handled spec on the job",
        lambda s: KOPF_ANNOTATION in annotations_of(s.get("CarbonAwareJob", "held")),
    ),
    "child-job": Effect(
        "the Immediate job's Job is created", lambda s: bool(s.get("Job", child_name("now")))
    ),
    "succeeded": Effect(
        "the Immediate job is followed to Succeeded", lambda s: state(s, "now") == "Succeeded"
    ),
    "sci": Effect(
        "the finished job gets its SCI", lambda s: "sci" in s.status("CarbonAwareJob", "now")
    ),
    "pod-sci-annotation": Effect(
        "the finished job's pod is annotated with the SCI",
        lambda s: any(
            labels.SCI_GRAMS in annotations_of(pod)
            for pod in owned_pods(s, "Job", child_name("now"))
        ),
    ),
    "plain-released": Effect(
        "the managed plain Job is unsuspended",
        lambda s: (s.get("Job", "plain").get("spec") or {}).get("suspend") is False,
    ),
    "clash-diagnosed": Effect(
        "a Job name taken by someone else's Job is recognised as not ours",
        lambda s: f"already exists in {s.namespace} and does not belong to CarbonAwareJob clash"
        in s.log,
    ),
    "runner-pod": Effect(
        "the SSH job's runner pod is created",
        lambda s: bool(owned_pods(s, "CarbonAwareJob", "ssh")),
    ),
    "probed": Effect("the ServerTarget is probed (status written)", lambda s: probed(s, "srv")),
    "probe-used-key": Effect(
        "the probe read the key and reached the network (refused: Unreachable)",
        lambda s: (c := status_condition(s.status("ServerTarget", "srv"), "Reachable")) is not None
        and c["reason"] == "Unreachable",
    ),
    "events": Effect(
        "Events are posted for the held job", lambda s: "Held" in events_about(s, "held")
    ),
    "metrics-api": Effect(
        "the CPU sampler reaches metrics.k8s.io (absent here: a 404, so it switches off)",
        lambda s: "no metrics.k8s.io API" in s.log,
    ),
    "late-held": Effect(
        "a job created later is seen and held", lambda s: held(s, "late-held"), LATE_OBJECTS
    ),
    "late-probed": Effect(
        "a ServerTarget created later is probed", lambda s: probed(s, "late-srv"), LATE_OBJECTS
    ),
    "late-succeeded": Effect(
        "the Job of a job created later is followed to Succeeded",
        lambda s: state(s, "late-now") == "Succeeded",
        LATE_OBJECTS,
    ),
    "late-runner-followed": Effect(
        "the runner pod of an SSH job created later is followed (Running)",
        lambda s: state(s, "late-ssh") == "Running",
        LATE_OBJECTS,
    ),
    "cancel-deleted-child": Effect(
        "a cancelled running job's Job is deleted",
        lambda s: state(s, "long") == "Failed" and not s.get("Job", child_name("long")),
        CANCEL,
        ready=lambda s: bool(s.get("Job", child_name("long"))),
    ),
    "cron-run": Effect(
        "the cron job's run is created",
        # (or its Event: a finished run may be deleted before a snapshot sees it)
        lambda s: any(
            (r["metadata"].get("labels") or {}).get(labels.CRONJOB) == "cron"
            for r in s.of_kind("CarbonAwareJob")
        )
        or "RunCreated" in events_about(s, "cron"),
    ),
    "cron-status": Effect(
        "the cron job's status records its period",
        lambda s: bool(s.status("CarbonAwareCronJob", "cron").get("lastScheduleTime")),
    ),
    "cron-history": Effect(
        "the cron job's finished run is deleted (history limit 0)",
        lambda s: "RunDeleted" in events_about(s, "cron"),
    ),
    "late-cron-run": Effect(
        "a cron job created later is seen and runs",
        lambda s: "RunCreated" in events_about(s, "late-cron"),
        LATE_OBJECTS,
    ),
    "policy-held": Effect(
        "a plain Job is held by the namespace's CarbonAwarePolicy (admission webhook)",
        lambda s: governed_and_suspended(s.get("Job", "governed")),
        POLICY_JOB,
        ready=lambda s: serving(POLICY_WEBHOOK_PORT),
    ),
    "keepalive": Effect(
        "the operator's keep-alive is in the peering object",
        lambda s: any(identity.endswith(f"-{s.pid}") for identity in s.peering),
    ),
    "paused": Effect(
        "kopf pauses for a peer with a higher priority",
        lambda s: "Pausing operations in favour of" in s.log,
        HIGHER_PEER,
    ),
}


@dataclass(frozen=True)
class Case:
    effect: str | None  # None: a need of kopf's own that this scenario cannot show otherwise
    evidence: Callable[[str], re.Pattern[str]]
    verbose: bool = False  # the refusal is logged at debug level


def case(group: str, resource: str, verb: str, effect: str | None, *, namespaced: bool,
         verbose: bool = False) -> tuple[Grant, Case]:  # fmt: skip
    grant = Grant(group, resource, verb)
    return grant, Case(effect, refusal(grant, in_namespace=namespaced), verbose)


CORE, BATCH, OURS, KOPF = "", "batch", "carbonaware.io", "kopf.dev"

# Every grant of the default ClusterRole (watchScope Cluster), and what breaks without it.
CLUSTER_CASES: dict[Grant, Case] = dict(
    [
        case(OURS, "carbonawarejobs", "list", "held", namespaced=False),
        case(OURS, "carbonawarejobs", "watch", "late-held", namespaced=False),
        case(OURS, "carbonawarejobs", "get", "succeeded", namespaced=True),
        case(OURS, "carbonawarejobs", "patch", "kopf-annotation", namespaced=True),
        case(OURS, "carbonawarejobs/status", "patch", "held", namespaced=True),
        case(OURS, "carbonawarejobs", "create", "cron-run", namespaced=True),
        case(OURS, "carbonawarejobs", "delete", "cron-history", namespaced=True),
        case(OURS, "carbonawarecronjobs", "list", "cron-run", namespaced=False),
        case(OURS, "carbonawarecronjobs", "watch", "late-cron-run", namespaced=False),
        case(OURS, "carbonawarecronjobs/status", "patch", "cron-status", namespaced=True),
        case(OURS, "carbonawarepolicies", "list", "policy-held", namespaced=True),
        case(OURS, "servertargets", "list", "probed", namespaced=False),
        case(OURS, "servertargets", "watch", "late-probed", namespaced=False),
        case(OURS, "servertargets/status", "patch", "probed", namespaced=True),
        case(BATCH, "jobs", "get", "clash-diagnosed", namespaced=True),
        case(BATCH, "jobs", "list", "succeeded", namespaced=False),
        case(BATCH, "jobs", "watch", "late-succeeded", namespaced=False),
        case(BATCH, "jobs", "create", "child-job", namespaced=True),
        case(BATCH, "jobs", "patch", "plain-released", namespaced=True),
        case(BATCH, "jobs", "delete", "cancel-deleted-child", namespaced=True),
        # Listing a finished Job's pods measures it: without it the outcome is still recorded,
        # but with no SCI.
        case(CORE, "pods", "list", "sci", namespaced=False),
        case(CORE, "pods", "watch", "late-runner-followed", namespaced=False),
        case(CORE, "pods", "create", "runner-pod", namespaced=True),
        case(CORE, "pods", "patch", "pod-sci-annotation", namespaced=True),
        case(CORE, "secrets", "get", "probe-used-key", namespaced=True),
        case(CORE, "events", "create", "events", namespaced=True),
        case("metrics.k8s.io", "pods", "list", "metrics-api", namespaced=True, verbose=True),
        case(CORE, "nodes", "get", "sci", namespaced=False),
        # kopf watches CRDs to start serving kinds installed after it started. Every CRD exists
        # before the operator here (and the plane is shared), so kopf's refused request is the
        # evidence; the rest keeps working without it.
        case("apiextensions.k8s.io", "customresourcedefinitions", "list", None,
             namespaced=False),
        case("apiextensions.k8s.io", "customresourcedefinitions", "watch", None,
             namespaced=False),
    ]
)  # fmt: skip

# The peered release adds these to the same ClusterRole.
PEERING_CASES: dict[Grant, Case] = dict(
    [
        # The refresh loop reads the peering object each tick; without it the loop pauses, so
        # nothing is probed (or released by the loop).
        case(KOPF, "clusterkopfpeerings", "get", "probed", namespaced=False),
        case(KOPF, "clusterkopfpeerings", "patch", "keepalive", namespaced=False),
        case(KOPF, "clusterkopfpeerings", "list", "paused", namespaced=False),
        case(KOPF, "clusterkopfpeerings", "watch", "paused", namespaced=False),
    ]
)
