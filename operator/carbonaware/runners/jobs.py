"""Building the ``batch/v1`` Job a CarbonAwareJob releases. Pure: dict in, dict out."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from carbonaware.api import labels

MAX_NAME = 63  # a Job's name also becomes a label value on its pods


def child_name(parent_name: str, suffix: str = "") -> str:
    """A deterministic child name: the parent's name (plus ``suffix``) when it fits in 63
    characters, else a prefix and a short hash of the full name, so replays never collide
    and never create a second child.
    """
    full = f"{parent_name}{suffix}"
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(digest) - len(suffix) - 1
    return f"{parent_name[:keep].rstrip('-.')}-{digest}{suffix}"


def child_labels(parent_name: str, parent_uid: str) -> dict[str, str]:
    """Labels that link a child Job and its pods to their CarbonAwareJob; ``managed`` lets the
    operator watch only its own Jobs (a server-side label selector)."""
    return {
        labels.MANAGED: labels.MANAGED_CHILD,
        labels.JOB_NAME: child_name(parent_name),
        labels.JOB_UID: parent_uid,
    }


def build_job(
    *,
    name: str,
    namespace: str,
    parent_uid: str,
    template: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Job for a released CarbonAwareJob: the user's template, our name and labels.

    The template's own labels and annotations are kept; ours are added on the Job and on
    its pod template so the pods can be found and annotated with the run's SCI.
    """
    metadata = copy.deepcopy(template.get("metadata") or {})
    spec = copy.deepcopy(template["spec"])
    link = child_labels(name, parent_uid)
    job_labels = {**(metadata.get("labels") or {}), **link}
    job_annotations = {**(metadata.get("annotations") or {}), **(annotations or {})}
    pod_template = spec.setdefault("template", {})
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **link}
    spec.pop("suspend", None)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": child_name(name),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": job_annotations,
        },
        "spec": spec,
    }
