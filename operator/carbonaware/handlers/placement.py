"""Where a job runs: the ServerTarget (``spec.ssh.targetSelector``) or the region
(``spec.placement``) with the lowest expected emissions, chosen again at every decision.

A held job with more than one place is decided at each place as if it were the only one
(:func:`~carbonaware.scheduling.placement.rank_places`), and the best place's decision is
its decision: every guarantee of the single-region policy holds. The candidates of an SSH job
are the ServerTargets its selector selects in its namespace, less those whose last probe
failed; when the best has no free slot and the job is due, the best one with a free slot
takes it. A ServerTarget's region is the job's ``spec.region`` if set, else its own, else the
operator's default. Regions are refreshed once per tick whatever the number of candidates
(``handlers.loop``).

Expected emissions of an SSH run: the run keeps one vCPU of the server busy for
``expectedDurationSeconds`` (E from the server's ``hardware`` power model, M its embodied
share over that time, the same model as the run's measured SCI). Targets without
``hardware`` have no E, and then every candidate is compared by intensity alone. Jobs
compare regions by intensity (the same pods run wherever they land).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carbonaware.api.conditions import Reason
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.hold import decide_for, request_of
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.state import HeldWork, TargetKey, TargetState
from carbonaware.scheduling.placement import Place, PlaceEstimate, rank_places
from carbonaware.scheduling.policy import Decision
from carbonaware.sci.estimate import FunctionalUnit, RunUsage, estimate_run
from carbonaware.sci.machines import machine_from_server_hardware


@dataclass(frozen=True)
class Candidate:
    """One place: a ServerTarget (SSH jobs) or a region with its nodeSelector (Jobs)."""

    region: str
    target: TargetKey | None = None
    node_selector: dict[str, str] | None = None
    energy_kwh: float | None = None
    embodied_grams: float = 0.0

    @property
    def name(self) -> str:
        return self.target[1] if self.target is not None else self.region


def run_footprint(
    state: TargetState, duration_seconds: int, pue: float
) -> tuple[float | None, float]:
    """E (kWh) and M (g) of a run keeping one vCPU of the target busy for the duration;
    (None, 0) when the target's hardware is not described."""
    if state.spec is None or state.spec.hardware is None:
        return None, 0.0
    machine = machine_from_server_hardware(state.spec.hardware, name=state.spec.host)
    seconds = float(duration_seconds)
    estimate = estimate_run(
        RunUsage(seconds, seconds, 1.0, 0.0), machine, 0.0, FunctionalUnit("run", 1.0), pue=pue
    )
    return estimate.energy_kwh, estimate.embodied_grams


def candidates(ctx: OperatorContext, work: HeldWork) -> list[Candidate]:
    """The places ``work`` may run now, in a stable order (the listed regions; targets by
    name)."""
    if work.regions:
        return [Candidate(entry.region, node_selector=entry.selector()) for entry in work.regions]
    if work.selector is None:
        return []
    spec_region = (work.body.get("spec") or {}).get("region")
    found = []
    for key, state in sorted(ctx.registry.targets().items()):
        if key[0] != work.namespace or state.spec is None or state.unreachable:
            continue
        if not work.selector.matches(state.labels):
            continue
        region = spec_region or state.region or ctx.settings.default_region
        energy, embodied = run_footprint(state, work.expected_duration_seconds, ctx.settings.pue)
        found.append(Candidate(region, target=key, energy_kwh=energy, embodied_grams=embodied))
    return found


def regions_wanted(ctx: OperatorContext, work: HeldWork) -> set[str]:
    """The regions whose intensity deciding ``work`` needs."""
    if not work.placed:
        return {work.region}
    return {candidate.region for candidate in candidates(ctx, work)} or {work.region}


def decide_placed(
    ctx: OperatorContext,
    work: HeldWork,
    snapshots: dict[str, RegionSnapshot],
    now: datetime,
) -> Decision:
    """The decision for ``work``; for a job with places, at the best place, which becomes
    ``work.target``/``work.region`` (and ``work.placement``, the status to record)."""
    if not work.placed:
        return decide_for(ctx, work, snapshots.get(work.region), now)
    found = candidates(ctx, work)
    if not found:
        return no_target(ctx, work, snapshots, now)
    regions = sorted({candidate.region for candidate in found})
    index = {region: i for i, region in enumerate(regions)}
    places = [Place(c.name, index[c.region], c.energy_kwh, c.embodied_grams) for c in found]
    known = [snapshots.get(region) for region in regions]
    ranked = rank_places(
        request_of(work),
        places,
        [snapshot.view if snapshot else None for snapshot in known],
        [snapshot.current if snapshot else None for snapshot in known],
        now,
        ctx.horizon(),
    )
    by_name = {candidate.name: candidate for candidate in found}
    best = ranked[0]
    if best.decision.release and work.selector is not None:
        free = [e for e in ranked if ctx.registry.has_capacity(by_name[e.place.name].target)]
        best = free[0] if free else best
    chosen = by_name[best.place.name]
    work.target, work.region = chosen.target, chosen.region
    work.node_selector = chosen.node_selector
    runner_up = next((e for e in ranked if e is not best), None)
    work.placement = {
        **_place_doc(best, chosen),
        "candidates": len(found),
        "runnerUp": _place_doc(runner_up, by_name[runner_up.place.name]) if runner_up else None,
    }
    return decide_for(ctx, work, snapshots.get(work.region), now)


def _place_doc(estimate: PlaceEstimate, candidate: Candidate) -> dict[str, Any]:
    """``status.placement`` of one place, every key set (None when unknown), so that a
    merge patch clears what no longer holds."""
    intensity, grams = estimate.intensity, estimate.grams
    return {
        "target": candidate.target[1] if candidate.target is not None else None,
        "region": candidate.region,
        "expectedIntensity": round(intensity, 2) if intensity is not None else None,
        "expectedGrams": round(grams, 3) if grams is not None else None,
    }


def no_target(
    ctx: OperatorContext, work: HeldWork, snapshots: dict[str, RegionSnapshot], now: datetime
) -> Decision:
    """No ServerTarget the selector selects is known and reachable: hold, and once the
    latest start has come, release into the failure (``handlers.release`` fails the job)."""
    work.target, work.placement = None, None
    decision = decide_for(ctx, work, snapshots.get(work.region), now)
    due = now + ctx.horizon() > work.latest_start
    return dataclasses.replace(decision, release=due, reason=Reason.NO_TARGET_AVAILABLE)
