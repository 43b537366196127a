"""Everything a handler needs, built once at start-up and kept in kopf's ``memo``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from carbonaware.config import OperatorSettings
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.handlers.state import Registry
from carbonaware.handlers.usage import UsageSampler
from carbonaware.k8s import Kube
from carbonaware.metrics import Metrics
from carbonaware.providers.base import Provider


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class OperatorContext:
    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    provider: Provider
    intensity: RegionIntensity
    registry: Registry = field(default_factory=Registry)
    usage: UsageSampler = field(default_factory=UsageSampler)
    clock: Callable[[], datetime] = wall_clock
    background: set[Any] = field(default_factory=set)
    exported_states: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def tick(self) -> timedelta:
        return timedelta(seconds=self.settings.tick_seconds)


def context_of(memo: Any) -> OperatorContext:
    """The context the start-up handler put into kopf's memo."""
    ctx = getattr(memo, "ctx", None)
    if not isinstance(ctx, OperatorContext):
        raise RuntimeError("the operator context is missing: the start-up handler did not run")
    return ctx
