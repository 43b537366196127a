"""The settings the forecast benchmark chooses, each on the first half of GB 2024 (and, for
the blend, DE 2023): the forecast correction's, and the blend's weight step and risk form."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from carbonaware.scheduling import CorrectionSettings, ForecastMode
from carbonaware.scheduling.simulate import SimulationResult
from carbonaware.scheduling.skill import DEFAULT_SKILL, SkillSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecastcells import Cell, base_settings, pct, run_all, share


def correction_grid() -> list[CorrectionSettings]:
    return [
        CorrectionSettings(fit_days=days, near_slots=near, risk_weight=risk, align_hours=align)
        for align in (0.0, 2.0)
        for days in (7, 14, 28)
        for near in (8, 12)
        for risk in (0.2, 0.3, 0.5)
    ]


def choose_correction(jobs: int) -> tuple[CorrectionSettings, list[str]]:
    """The correction whose GB 2024 column result was best on the first half of the year."""
    base = base_settings("gb-2024")
    cells = [
        Cell("gb-2024", "column", dataclasses.replace(base, correction=c))
        for c in correction_grid()
    ]
    lines = [
        "| alignment | fit days | near slots | penalty | first half (chosen on) | second half |",
        "|---|---|---|---|---|---|",
    ]
    scored = []
    for cell, result, _ in run_all(cells, jobs):
        c = cell.settings.correction
        first, second = share(result, second_half=False), share(result, second_half=True)
        scored.append((first, c))
        align = f"{c.align_hours:g} h" if c.align_hours else "none"
        lines.append(
            f"| {align} | {c.fit_days} | {c.near_slots} | {c.risk_weight} | {pct(first)} "
            f"| {pct(second)} |"
        )
        print(lines[-1], flush=True)
    return max(scored, key=lambda pair: pair[0])[1], lines


# The blend's weights move in steps of this; 1 picks the best source per lead alone.
BLEND_STEPS = (0.1, 0.2, 0.25, 0.5, 1.0)
# The blend's risk penalty: the sources' weighted risk as it is, or scaled by how much less
# the mix has erred than its sources on average (``SkillSettings.diversified_risk``).
RISK_FORMS = (False, True)
# The cells the blend's settings are chosen on: the first half of each GB 2024 variant, and
# DE 2023 (which has no second half of its own). The second halves are reported, not used.
SELECTION = ("gb-2024", "gb-2024 vintages", "gb-2024 poor", "de-2023 vintages", "de-2023 poor")


def risk_form(diversified: bool) -> str:
    return "scaled by the mix's error" if diversified else "weighted"


def choose_blend(
    correction: CorrectionSettings, jobs: int
) -> tuple[SkillSettings, dict[str, tuple[SimulationResult, float]], list[str]]:
    """The weight step and risk form whose blend captured the most summed over the selection
    cells; returns them, their results and CPU seconds by cell (for the matrix) and the table
    of every variant."""
    cells = [
        Cell(
            name,
            "blend",
            dataclasses.replace(
                base_settings(name),
                correction=correction,
                forecast=ForecastMode.BLEND,
                skill=SkillSettings(weight_step=step, diversified_risk=diversified),
            ),
        )
        for diversified in RISK_FORMS
        for step in BLEND_STEPS
        for name in SELECTION
    ]
    by_variant: dict[tuple[float, bool], dict[str, tuple[SimulationResult, float]]] = {}
    for cell, result, cpu in run_all(cells, jobs):
        variant = (cell.settings.skill.weight_step, cell.settings.skill.diversified_risk)
        by_variant.setdefault(variant, {})[cell.data] = (result, cpu)
    lines = [
        "| weights in steps of | risk penalty | gb-2024, first half | second half | gb-2024 "
        "vintages, first half | second half | gb-2024 poor, first half | second half "
        "| de-2023 vintages | de-2023 poor | sum of the first halves and DE (chosen on) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    scores = {}
    for (step, diversified), results in by_variant.items():
        selected = [share(results[name][0], second_half=False) for name in SELECTION]
        scores[(step, diversified)] = math.fsum(selected)
        cells_text = []
        for name, first in zip(SELECTION, selected, strict=True):
            cells_text.append(pct(first))
            if name.startswith("gb"):
                cells_text.append(pct(share(results[name][0], second_half=True)))
        label = f"{step:g}" + (" (the best source alone)" if step == 1 else "")
        lines.append(
            f"| {label} | {risk_form(diversified)} | {' | '.join(cells_text)} "
            f"| {100 * scores[(step, diversified)]:.2f} |"
        )
        print(lines[-1], flush=True)
    step, diversified = max(scores, key=lambda variant: scores[variant])
    if (step, diversified) != (DEFAULT_SKILL.weight_step, DEFAULT_SKILL.diversified_risk):
        print(
            f"note: the operator's default is weight step {DEFAULT_SKILL.weight_step:g}, risk "
            f"{risk_form(DEFAULT_SKILL.diversified_risk)}"
        )
    chosen = SkillSettings(weight_step=step, diversified_risk=diversified)
    return chosen, by_variant[(step, diversified)], lines
