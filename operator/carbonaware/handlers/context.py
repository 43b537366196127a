"""Everything a handler needs, built once at start-up and kept in kopf's ``memo``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from carbonaware.api.cronjob import CarbonAwareCronJobSpec
from carbonaware.api.policy import PLURAL as POLICY_PLURAL
from carbonaware.api.policy import NamedPolicy, named_policies
from carbonaware.config import OperatorSettings
from carbonaware.handlers.intensity import RegionIntensity, RegionSnapshot
from carbonaware.handlers.state import Key, Registry
from carbonaware.handlers.usage import UsageSampler
from carbonaware.handlers.work import created_at
from carbonaware.k8s import Kube
from carbonaware.metrics import Metrics
from carbonaware.providers.base import Provider
from carbonaware.runners.allowlist import HostAllowList
from carbonaware.scheduling.policy import decision_horizon

logger = logging.getLogger(__name__)

TICK_GAPS_KEPT = 20


def wall_clock() -> datetime:
    return datetime.now(UTC)


def same_time(moment: datetime) -> datetime:
    return moment


@dataclass(frozen=True)
class ScaledClock:
    """Operator time running ``scale`` seconds per wall-clock second from ``origin``
    (``CARBONAWARE_TIME_SCALE``): a testing and demo aid, so that hours of holding and
    releasing pass in minutes. ``at`` maps instants the API server recorded (creation
    times) onto the same scale, so a job's latest start keeps its meaning."""

    origin: datetime
    scale: float
    wall: Callable[[], datetime] = wall_clock

    @classmethod
    def from_settings(cls, settings: OperatorSettings) -> ScaledClock:
        origin = settings.time_origin or wall_clock()
        if origin.tzinfo is None:
            origin = origin.replace(tzinfo=UTC)
        return cls(origin=origin.astimezone(UTC), scale=settings.time_scale)

    def __call__(self) -> datetime:
        return self.at(self.wall())

    def at(self, moment: datetime) -> datetime:
        """Operator time at the wall-clock instant ``moment``."""
        return self.origin + (moment - self.origin) * self.scale


@dataclass
class CronEntry:
    """A CarbonAwareCronJob as last seen, its spec (None: invalid, or stopped by an error)."""

    body: dict[str, Any]
    spec: CarbonAwareCronJobSpec | None
    waiting_for: datetime | None = None
    """The period a Forbid wait was announced for (one Event per period)."""


@dataclass
class PolicyCache:
    """The valid CarbonAwarePolicies of each namespace, listed at most every ``ttl`` seconds."""

    ttl: float
    monotonic: Callable[[], float] = time.monotonic
    entries: dict[str, tuple[float, list[NamedPolicy]]] = field(default_factory=dict)

    async def of(self, kube: Kube, namespace: str) -> list[NamedPolicy]:
        now = self.monotonic()
        cached = self.entries.get(namespace)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        items = await kube.list_objects(POLICY_PLURAL, namespace)
        policies, invalid = named_policies(items)
        if invalid:
            logger.warning(
                "CarbonAwarePolicies in %s that govern nothing (invalid spec): %s",
                namespace, ", ".join(invalid),
            )  # fmt: skip
        self.entries[namespace] = (now, policies)
        return policies


@dataclass
class OperatorContext:
    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    provider: Provider
    intensity: RegionIntensity
    registry: Registry = field(default_factory=Registry)
    usage: UsageSampler = field(default_factory=UsageSampler)
    cronjobs: dict[tuple[str, str], CronEntry] = field(default_factory=dict)
    """CarbonAwareCronJobs by (namespace, name), kept by their watch handler."""
    policies: PolicyCache = field(default_factory=lambda: PolicyCache(ttl=5.0))
    """The admission webhook's CarbonAwarePolicies per namespace (``handlers.admission``)."""
    clock: Callable[[], datetime] = wall_clock
    observed: Callable[[datetime], datetime] = same_time
    """Operator time of an instant the API server recorded (see :class:`ScaledClock`)."""
    background: set[Any] = field(default_factory=set)
    exported_states: set[tuple[str, str, str]] = field(default_factory=set)
    refreshing: asyncio.Task[dict[str, RegionSnapshot]] | None = None
    """The provider refresh the loop started and has not seen finish yet."""
    tick_gaps: deque[timedelta] = field(default_factory=lambda: deque(maxlen=TICK_GAPS_KEPT))
    """Operator time from each of the last few ticks' decisions to the end of the next tick,
    as it really came (``loop.tick_done``)."""
    allowed_hosts: HostAllowList = field(default_factory=HostAllowList)
    """Where ServerTargets may point (``CARBONAWARE_SSH_ALLOWED_HOSTS``), parsed at start-up."""
    synced: bool = False
    """Runs already going were counted against their targets (``reconcile.initial_sync``)."""
    reattachments: dict[Key, int] = field(default_factory=dict)
    """Runner pods re-created per job after one vanished before it reported."""
    last_tick_completed: float = field(default_factory=time.monotonic)
    """Monotonic time the refresh loop last completed a tick (the liveness probe reads it)."""

    @property
    def tick(self) -> timedelta:
        """Operator time between two decisions, as configured."""
        return timedelta(seconds=self.settings.tick_seconds * self.settings.time_scale)

    def horizon(self) -> timedelta:
        """How far ahead a decision must look for the deadline (``decision_horizon``)."""
        return decision_horizon(self.tick, self.tick_gaps)

    def created(self, body: Any) -> datetime:
        """An object's creation time in operator time."""
        return self.observed(created_at(body))


def context_of(memo: Any) -> OperatorContext:
    """The context the start-up handler put into kopf's memo."""
    ctx = getattr(memo, "ctx", None)
    if not isinstance(ctx, OperatorContext):
        raise RuntimeError("the operator context is missing: the start-up handler did not run")
    return ctx
