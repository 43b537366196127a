"""Overrides people set as annotations: release now, hold, cancel.

Annotations rather than spec fields, so that ``kubectl annotate``, a GitOps commit and the
``kubectl carbonaware`` plugin all work the same way, on CarbonAwareJobs and on managed
plain Jobs alike. Precedence when several are set: cancel, then release-now, then hold.

Who asked: Kubernetes does not record the requesting user on an object; the closest fact
it keeps is the field manager of the write that set the annotation (``managedFields``:
``kubectl-annotate``, ``kubectl-carbonaware``, ``argocd-controller``...). That name, and
the time of the write, are what conditions and Events quote.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carbonaware.api import labels

# Values that mean "not set", so a GitOps tool can switch an override off by value.
OFF_VALUES = frozenset({"", "false", "no", "0"})
FORCE = "force"
UNKNOWN_REQUESTER = "an unknown client"


class HoldMode(enum.StrEnum):
    """``carbonaware.io/hold``: the deadline still releases (``UntilDeadline``), or not."""

    UNTIL_DEADLINE = "UntilDeadline"
    FORCE = "Force"


@dataclass(frozen=True, slots=True)
class Overrides:
    """The overrides set on one object, and who set each (field manager names)."""

    release_now: bool = False
    hold: HoldMode | None = None
    cancel: bool = False
    release_now_by: str = UNKNOWN_REQUESTER
    hold_by: str = UNKNOWN_REQUESTER
    cancel_by: str = UNKNOWN_REQUESTER

    @property
    def any(self) -> bool:
        return self.release_now or self.hold is not None or self.cancel


def _is_on(annotations: Mapping[str, Any], key: str) -> bool:
    value = annotations.get(key)
    return isinstance(value, str) and value.strip().lower() not in OFF_VALUES


def requester(meta: Mapping[str, Any], key: str) -> str:
    """The field manager that last wrote annotation ``key`` (from ``managedFields``)."""
    field = f"f:{key}"
    best: tuple[str, str] | None = None
    for entry in meta.get("managedFields") or []:
        if not isinstance(entry, Mapping):
            continue
        fields = entry.get("fieldsV1") or {}
        annotations = (fields.get("f:metadata") or {}).get("f:annotations") or {}
        if field not in annotations:
            continue
        when = str(entry.get("time") or "")
        if best is None or when >= best[0]:
            best = (when, str(entry.get("manager") or UNKNOWN_REQUESTER))
    return best[1] if best else UNKNOWN_REQUESTER


def overrides_of(meta: Mapping[str, Any]) -> Overrides:
    """The overrides in an object's metadata (its annotations and ``managedFields``)."""
    annotations: Mapping[str, Any] = meta.get("annotations") or {}
    hold: HoldMode | None = None
    if _is_on(annotations, labels.HOLD):
        forced = str(annotations[labels.HOLD]).strip().lower() == FORCE
        hold = HoldMode.FORCE if forced else HoldMode.UNTIL_DEADLINE
    found = Overrides(
        release_now=_is_on(annotations, labels.RELEASE_NOW),
        hold=hold,
        cancel=_is_on(annotations, labels.CANCEL),
    )
    if not found.any:
        return found
    return Overrides(
        release_now=found.release_now,
        hold=found.hold,
        cancel=found.cancel,
        release_now_by=requester(meta, labels.RELEASE_NOW) if found.release_now else "",
        hold_by=requester(meta, labels.HOLD) if hold else "",
        cancel_by=requester(meta, labels.CANCEL) if found.cancel else "",
    )
