"""A boundary's SCI laid out for people (tables) and for programs (JSON).

Three tables: the SCI per component (E, I, E x I, M, SCI), the energy by part before PUE
(CPU, memory, storage, network), and the inputs each instance-type component used with the
origin of every one (instance table, BoaviztAPI, the boundary itself, or a default), so a
difference between two estimates can be traced to the figure behind it. Numbers are printed
in plain notation: R = 1728000 requests prints as 1728000, never 1.728e+06.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from carbonaware.sci.boundary import BoundaryResult, ComponentResult

PARTS = ("cpu", "memory", "storage", "network", "total")


def plain(value: float, significant: int | None = None) -> str:
    """``value`` without exponent notation, to ``significant`` digits when given."""
    if significant is not None and value != 0:
        value = float(f"{value:.{significant}g}")
    text = format(Decimal(repr(float(value))).normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Report:
    """A result laid out for printing: the SCI table, then breakdown tables and closing lines."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    footer: tuple[str, ...]
    breakdowns: tuple[Table, ...] = ()


def _energy_table(result: BoundaryResult) -> Table:
    headers = ("Component", "count", "CPU (kWh)", "memory (kWh)", "storage (kWh)",
               "network (kWh)", "stated (kWh)", "PUE")  # fmt: skip
    rows = []
    for c in result.components:
        rows.append(
            (c.name, str(c.count), *(f"{c.part_kwh(part):.5f}" for part in PARTS), f"{c.pue:g}")
        )
    return Table("Energy by part, before PUE (all instances of a component)", headers,
                 tuple(rows))  # fmt: skip


def _inputs_table(result: BoundaryResult) -> Table | None:
    rows = []
    for c in result.components:
        for item in c.inputs:
            value = (
                item.unit if item.name.endswith(" row") else f"{plain(item.value, 6)} {item.unit}"
            )
            rows.append((c.name, item.name, value.strip(), item.source))
    if not rows:
        return None
    return Table("Inputs per instance and where each came from",
                 ("Component", "input", "value", "source"), tuple(rows))  # fmt: skip


def build_report(result: BoundaryResult) -> Report:
    """Per-component E, I, operational, embodied and SCI, then the total per R."""
    headers = ("Component", "E (kWh)", "I (gCO2e/kWh)", "E x I (g)", "M (g)", "SCI (g per R)")
    rows = [
        (
            c.name,
            f"{c.energy_kwh:.5f}",
            f"{c.intensity:g}",
            f"{c.operational_grams:.2f}",
            f"{c.embodied_grams:.3f}",
            f"{c.total_grams:.2f}",
        )
        for c in result.components
    ]
    rows.append(
        (
            "Total",
            f"{result.energy_kwh:.5f}",
            "",
            f"{result.operational_grams:.2f}",
            f"{result.embodied_grams:.3f}",
            f"{result.total_grams:.2f}",
        )
    )
    unit = result.functional_unit
    described = (
        f" ({result.functional_unit_description})" if result.functional_unit_description else ""
    )
    footer = [f"SCI = {result.total_grams:.2f} gCO2e per R, R = {unit.text}{described}"]
    if unit.quantity != 1:
        footer.append(f"    = {plain(result.per_unit_grams, 4)} gCO2e per one of the {unit.text}")
    tables = [_energy_table(result)]
    inputs = _inputs_table(result)
    if inputs is not None:
        tables.append(inputs)
    return Report(
        title=f"SCI of {result.name}" if result.name else "SCI",
        headers=headers,
        rows=tuple(rows),
        footer=tuple(footer),
        breakdowns=tuple(tables),
    )


def _render_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return [title, line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_plain(report: Report) -> str:
    """The report as aligned plain text (for pipes, logs and tests)."""
    out = _render_table(report.title, report.headers, report.rows)
    out += ["", *report.footer]
    for table in report.breakdowns:
        out += ["", *_render_table(table.title, table.headers, table.rows)]
    return "\n".join(out)


def _component_json(c: ComponentResult) -> dict[str, Any]:
    return {
        "name": c.name,
        "count": c.count,
        "instanceType": c.instance_type,
        "cloud": c.cloud,
        "intensity": c.intensity,
        "pue": c.pue,
        "energyKWh": c.energy_kwh,
        "partsKWh": {part: c.part_kwh(part) for part in PARTS},
        "methods": {p.part: p.method for p in c.parts},
        "operationalGrams": c.operational_grams,
        "embodiedGrams": c.embodied_grams,
        "totalGrams": c.total_grams,
        "inputs": [
            {"name": i.name, "value": i.value, "unit": i.unit, "source": i.source} for i in c.inputs
        ],
    }


def to_json(result: BoundaryResult) -> dict[str, Any]:
    """The whole result as one JSON-ready mapping (camelCase like status.sci)."""
    unit = result.functional_unit
    return {
        "name": result.name,
        "functionalUnit": {
            "name": unit.name,
            "quantity": unit.quantity,
            "text": unit.text,
            "description": result.functional_unit_description,
        },
        "components": [_component_json(c) for c in result.components],
        "energyKWh": result.energy_kwh,
        "operationalGrams": result.operational_grams,
        "embodiedGrams": result.embodied_grams,
        "totalGrams": result.total_grams,
        "perUnitGrams": result.per_unit_grams,
    }
