"""The in-memory index of held work, fed by watch events, read by the refresh loop.

Nothing here calls the API: the index is rebuilt from kopf's initial listing after every
restart, so it never needs persisting. Held CarbonAwareJobs and held plain Jobs share one
shape (:class:`HeldWork`), which is all the refresh loop needs to re-plan and release.
"""

from __future__ import annotations

import asyncio
import enum
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carbonaware.api.carbonawarejob import Interruptible, PlacementRegion, SchedulePolicy
from carbonaware.api.intensity import IntensityIndex
from carbonaware.api.overrides import Overrides
from carbonaware.api.selector import LabelSelector
from carbonaware.api.servertarget import ServerTargetSpec

Key = tuple[str, str, str]  # (kind, namespace, name)
TargetKey = tuple[str, str]  # (namespace, name)


class WorkKind(enum.StrEnum):
    CARBON_AWARE_JOB = "CarbonAwareJob"
    JOB = "Job"


@dataclass
class HeldWork:
    """A held job as the refresh loop sees it. ``body`` is the latest object seen."""

    kind: WorkKind
    namespace: str
    name: str
    uid: str
    region: str
    policy: SchedulePolicy
    created: datetime
    latest_start: datetime
    expected_duration_seconds: int
    max_intensity: float | None
    max_index: IntensityIndex | None
    priority: int
    target: TargetKey | None
    planned_start: datetime | None
    held_reason: str | None
    body: dict[str, Any]
    latest_start_bound: str = "MaxDelay"
    retry_at: float | None = None
    """Monotonic time before which a refused create is not tried again (back-off)."""
    rejections: int = 0
    """Creates the API server refused in a row (quota, admission, RBAC)."""
    overrides: Overrides = field(default_factory=Overrides)
    """release-now / hold set by a person (read with ``managedFields``, before they are
    dropped from ``body``)."""
    selector: LabelSelector | None = None
    """``spec.ssh.targetSelector``: ``target`` is then the place chosen at the last decision."""
    regions: tuple[PlacementRegion, ...] = ()
    """``spec.placement.regions``: ``region`` is then the one chosen at the last decision."""
    placement: dict[str, Any] | None = None
    """``status.placement`` as of the last decision (jobs with more than one place)."""
    node_selector: dict[str, str] | None = None
    """The chosen region's nodeSelector (``spec.placement``), added to the Job at release."""
    interruptible: Interruptible | None = None
    """``spec.schedule.interruptible``: the first start is the plan's first segment."""

    @property
    def placed(self) -> bool:
        """Whether the operator chooses where this job runs, not only when."""
        return self.selector is not None or bool(self.regions)

    @property
    def key(self) -> Key:
        return (self.kind.value, self.namespace, self.name)

    @property
    def generation(self) -> int | None:
        value = (self.body.get("metadata") or {}).get("generation")
        return int(value) if isinstance(value, int) else None


class ChildKind(enum.StrEnum):
    """What a released job runs as: what the reconcile pass looks for."""

    JOB = "Job"  # a child Job of a CarbonAwareJob
    RUNNER_POD = "Pod"  # an SSH-runner pod
    IN_PROCESS = "InProcess"  # an SSH run followed by a task of this process
    PLAIN_JOB = "PlainJob"  # a managed plain Job: the object itself


@dataclass
class ReleasedWork:
    """A released job not finished yet: what the periodic reconcile pass checks."""

    kind: WorkKind
    namespace: str
    name: str
    uid: str
    child_kind: ChildKind
    child_name: str
    target: TargetKey | None = None

    @property
    def key(self) -> Key:
        return (self.kind.value, self.namespace, self.name)


@dataclass
class SegmentedRun:
    """A released interruptible job not finished yet: what the loop pauses and resumes.

    ``segments`` is ``status.segments`` as last written (the open one, without ``end``, is the
    current run). ``confirmed`` is False until the child was last set to this state by this
    process: after a restart the first decision is applied to the child whatever the status
    says, so a stop between the status write and the child's change leaves nothing behind.
    """

    kind: WorkKind
    namespace: str
    name: str
    uid: str
    region: str
    created: datetime
    deadline: datetime
    work_seconds: float
    rules: Interruptible
    child_name: str | None
    """The child Job; None for an SSH run (paused by signals)."""
    segments: list[dict[str, Any]]
    body: dict[str, Any]
    confirmed: bool = False
    intensity_grams_seconds: float = 0.0
    """Intensity x seconds seen by the ticks of the current segment (its mean so far)."""
    intensity_seconds: float = 0.0
    last_tick: datetime | None = None

    @property
    def key(self) -> Key:
        return (self.kind.value, self.namespace, self.name)

    @property
    def running(self) -> bool:
        return bool(self.segments) and self.segments[-1].get("end") is None

    @property
    def interruptions(self) -> int:
        """Pauses so far: every closed segment was closed by one."""
        return sum(1 for segment in self.segments if segment.get("end") is not None)

    @property
    def done_seconds(self) -> float:
        """Run time of the closed segments."""
        return sum(float(s.get("workSeconds") or 0.0) for s in self.segments if s.get("end"))


@dataclass
class TargetState:
    """A ServerTarget as last seen, its running jobs and when it was last probed."""

    max_concurrent: int = 1
    region: str | None = None
    spec: ServerTargetSpec | None = None
    body: dict[str, Any] | None = None
    generation: int | None = None
    last_probe: datetime | None = None
    running: set[Key] = field(default_factory=set)
    starting: set[Key] = field(default_factory=set)
    """Jobs whose release has claimed a slot and not finished starting (see ``reserve``)."""

    @property
    def busy(self) -> int:
        return len(self.running | self.starting)

    @property
    def labels(self) -> dict[str, str]:
        return dict(((self.body or {}).get("metadata") or {}).get("labels") or {})

    @property
    def unreachable(self) -> bool:
        """The last probe failed (a target never probed yet is not known to be down)."""
        conditions = ((self.body or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Reachable" and c.get("status") == "False" for c in conditions)

    @property
    def free(self) -> int:
        return max(self.max_concurrent - self.busy, 0)


class Registry:
    """Held work by key, ServerTarget capacity, and one lock per object.

    The lock serialises the handlers and the refresh loop for one object, so a release
    and a spec edit, or two releases after a restart, never interleave.
    """

    def __init__(self) -> None:
        self._held: dict[Key, HeldWork] = {}
        self._targets: dict[TargetKey, TargetState] = defaultdict(TargetState)
        self._locks: dict[Key, asyncio.Lock] = {}
        self._released: set[str] = set()
        self._states: dict[Key, str] = {}
        self._running: dict[Key, ReleasedWork] = {}
        self._segmented: dict[Key, SegmentedRun] = {}

    # ------------------------------------------------------------------ held work

    def hold(self, work: HeldWork) -> None:
        self._held[work.key] = work

    def forget(self, key: Key) -> HeldWork | None:
        return self._held.pop(key, None)

    def remember_released(self, uid: str) -> None:
        """Released objects are never held again, even if a late watch event says so."""
        self._released.add(uid)

    def was_released(self, uid: str) -> bool:
        return uid in self._released

    def forget_released(self, uid: str) -> None:
        self._released.discard(uid)

    def get(self, key: Key) -> HeldWork | None:
        return self._held.get(key)

    def held(self) -> list[HeldWork]:
        return list(self._held.values())

    def as_planned(self, work: HeldWork) -> HeldWork | None:
        """The held entry for ``work``'s object if a decision made on ``work`` still holds for
        it: ``work`` itself, or a newer entry for the same object with the same spec and
        overrides (a watch event for a status write of ours re-registers the object; that
        must not cost it its turn). None when it was released, deleted, edited or overridden
        since."""
        current = self._held.get(work.key)
        if current is work:
            return work
        if (
            current is None
            or current.uid != work.uid
            or current.generation != work.generation
            or current.overrides != work.overrides
        ):
            return None
        if current.placed:  # the place was chosen with the decision
            current.target, current.region = work.target, work.region
            current.placement, current.node_selector = work.placement, work.node_selector
        return current

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[HeldWork]:
        return iter(list(self._held.values()))

    def queued_on(self, target: TargetKey) -> int:
        return sum(1 for work in self._held.values() if work.target == target)

    # ------------------------------------------------------------------ released work

    def track(self, work: ReleasedWork) -> None:
        """Follow ``work`` until it finishes (see ``handlers.reconcile``)."""
        self._running[work.key] = work

    def untrack(self, key: Key, uid: str | None = None) -> ReleasedWork | None:
        """Stop following ``key``; with ``uid``, only if it is still that object (a new one
        may have taken the name)."""
        self.unsegment(key, uid)
        work = self._running.get(key)
        if work is None or (uid is not None and work.uid != uid):
            return None
        return self._running.pop(key)

    def segment(self, run: SegmentedRun) -> SegmentedRun:
        """Pause and resume ``run`` until it ends; a run already known (same UID) is kept."""
        known = self._segmented.get(run.key)
        if known is not None and known.uid == run.uid:
            return known
        self._segmented[run.key] = run
        return run

    def segmented(self) -> list[SegmentedRun]:
        return list(self._segmented.values())

    def unsegment(self, key: Key, uid: str | None = None) -> None:
        known = self._segmented.get(key)
        if known is not None and (uid is None or known.uid == uid):
            del self._segmented[key]

    def tracked(self) -> list[ReleasedWork]:
        return list(self._running.values())

    def tracked_work(self, key: Key) -> ReleasedWork | None:
        return self._running.get(key)

    # ------------------------------------------------------------------ states (metrics)

    def observe_state(self, key: Key, state: str | None) -> None:
        """The state an object's watch event showed; None when it was deleted."""
        if state is None:
            self._states.pop(key, None)
        else:
            self._states[key] = state

    def state_counts(self) -> dict[tuple[str, str, str], int]:
        """Objects by (namespace, kind, state)."""
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for (kind, namespace, _), state in self._states.items():
            counts[(namespace, kind, state)] += 1
        return dict(counts)

    # ------------------------------------------------------------------ targets

    def set_target(
        self, target: TargetKey, *, max_concurrent: int, region: str | None
    ) -> TargetState:
        state = self._targets[target]
        state.max_concurrent = max_concurrent
        state.region = region
        return state

    def has_capacity(self, target: TargetKey | None) -> bool:
        """Room to start one more job on ``target`` (always, for in-cluster Jobs)."""
        return target is None or self._targets[target].free > 0

    def drop_target(self, target: TargetKey) -> None:
        """Forget a deleted target, but keep counting runs still going on it."""
        state = self._targets.get(target)
        if state is None:
            return
        if state.running:
            state.spec = state.body = None
        else:
            del self._targets[target]

    def target(self, target: TargetKey) -> TargetState:
        return self._targets[target]

    def targets(self) -> dict[TargetKey, TargetState]:
        return dict(self._targets)

    def reserve(self, target: TargetKey | None, key: Key) -> bool:
        """Claim a slot on ``target`` for the release of ``key``, or say there is none.

        Starting a run awaits the API (the target, its key Secret) before it counts as
        running; the claim is taken before the first await, so two releases starting at
        once cannot both take the last slot. Give it back with :meth:`unreserve`.
        """
        if target is None:
            return True
        state = self._targets[target]
        if key not in state.running and key not in state.starting and state.free <= 0:
            return False
        state.starting.add(key)
        return True

    def unreserve(self, target: TargetKey | None, key: Key) -> None:
        if target is not None and target in self._targets:
            self._targets[target].starting.discard(key)

    def mark_running(self, target: TargetKey, key: Key) -> None:
        self._targets[target].running.add(key)

    def mark_finished(self, target: TargetKey, key: Key) -> None:
        self._targets[target].running.discard(key)

    # ------------------------------------------------------------------ locks

    def lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def in_flight(self, key: Key) -> bool:
        """Whether a step holds ``key``'s lock now (a release or a plan in flight)."""
        lock = self._locks.get(key)
        return lock is not None and lock.locked()

    def drop_lock(self, key: Key) -> None:
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def object_deleted(self, key: Key, uid: str) -> None:
        """Everything kept about the deleted object ``uid`` at ``key``: its plan, its run,
        that it was released, its lock."""
        self.forget(key)
        self.untrack(key, uid)
        self.forget_released(uid)
        self.drop_lock(key)
