"""Which of the jobs the policy wants to release may go this tick, when capacity is limited.

Order: jobs whose latest start has come (the next tick would be past it) first, then higher
``priority``, then the earlier latest start, then the key (for a stable, replayable order).
A job goes if its target has a free slot (``running + released so far < maxConcurrent``)
and the operator-wide cap on releases per tick is not used up; otherwise it stays held with
reason ``TargetBusy``. Capacity is a hard limit: a job whose latest start has come but
whose target is full cannot meet its deadline and is released first as soon as a slot
frees up (its message says so).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonaware.api.conditions import Reason


@dataclass(frozen=True, slots=True)
class ReleaseCandidate:
    """A job the policy wants to release now.

    ``target`` identifies what limits it (a ServerTarget's name or (namespace, name)); None
    when nothing does.
    """

    key: str
    priority: int
    latest_start: datetime
    target: Hashable | None = None


@dataclass(frozen=True, slots=True)
class Deferred:
    """A candidate that stays held this tick; ``reason`` is always ``TargetBusy``."""

    key: str
    reason: Reason
    message: str
    deadline_passed: bool


@dataclass(frozen=True, slots=True)
class ReleasePlan:
    """``released`` in release order; ``deferred`` in the order they will be considered next."""

    released: tuple[str, ...]
    deferred: tuple[Deferred, ...]


def release_order_key(
    candidate: ReleaseCandidate, *, now: datetime, tick: timedelta
) -> tuple[int, int, datetime, str]:
    """Deadline-due first, then higher priority, earlier latest start, key."""
    due = now + tick > candidate.latest_start
    return (0 if due else 1, -candidate.priority, candidate.latest_start, candidate.key)


def plan_releases(
    candidates: Iterable[ReleaseCandidate],
    *,
    now: datetime,
    tick: timedelta,
    running: Mapping[Hashable, int],
    max_concurrent: Mapping[Hashable, int],
    max_releases_per_tick: int | None = None,
) -> ReleasePlan:
    """Split candidates into those released this tick and those kept held (``TargetBusy``).

    ``running`` counts runs in progress per target; a target missing from ``max_concurrent``
    has no limit. ``max_releases_per_tick`` (None: no limit) caps the whole tick.
    """
    ordered = sorted(candidates, key=lambda c: release_order_key(c, now=now, tick=tick))
    in_use: dict[Hashable, int] = dict(running)
    released: list[str] = []
    deferred: list[Deferred] = []
    for candidate in ordered:
        due = now + tick > candidate.latest_start
        target = candidate.target
        limit = max_concurrent.get(target) if target is not None else None
        if max_releases_per_tick is not None and len(released) >= max_releases_per_tick:
            deferred.append(
                Deferred(
                    key=candidate.key,
                    reason=Reason.TARGET_BUSY,
                    message=_busy_message(
                        f"the operator releases at most {max_releases_per_tick} jobs per tick",
                        due,
                    ),
                    deadline_passed=due,
                )
            )
            continue
        if target is not None and limit is not None and in_use.get(target, 0) >= limit:
            deferred.append(
                Deferred(
                    key=candidate.key,
                    reason=Reason.TARGET_BUSY,
                    message=_busy_message(
                        f"target {_target_name(target)} already runs "
                        f"{in_use.get(target, 0)} of its maxConcurrent {limit} jobs",
                        due,
                    ),
                    deadline_passed=due,
                )
            )
            continue
        released.append(candidate.key)
        if target is not None:
            in_use[target] = in_use.get(target, 0) + 1
    return ReleasePlan(released=tuple(released), deferred=tuple(deferred))


def order_releases(
    candidates: Iterable[ReleaseCandidate],
    free: Mapping[Hashable, int],
    max_releases_per_tick: int | None,
    *,
    now: datetime,
    tick: timedelta,
) -> tuple[list[ReleaseCandidate], list[ReleaseCandidate]]:
    """:func:`plan_releases` with capacity given as free slots per target; returns the
    candidates released and those kept held, each in release order."""
    listed = list(candidates)
    plan = plan_releases(
        listed,
        now=now,
        tick=tick,
        running={},
        max_concurrent=free,
        max_releases_per_tick=max_releases_per_tick,
    )
    by_key = {candidate.key: candidate for candidate in listed}
    return (
        [by_key[key] for key in plan.released],
        [by_key[deferred.key] for deferred in plan.deferred],
    )


def _target_name(target: Hashable) -> str:
    if isinstance(target, tuple):
        return "/".join(str(part) for part in target)
    return str(target)


def _busy_message(cause: str, due: bool) -> str:
    if due:
        return (
            f"Held at its latest start: {cause}. The deadline cannot be met; the job goes "
            "first as soon as there is capacity."
        )
    return f"Held: {cause}; the job goes in priority order when there is capacity."
