"""`carbonaware sci FILE.yaml`: the GSF eShoppen case study, as published and recomputed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonaware.cli import app
from carbonaware.errors import SpecError
from carbonaware.sci import evaluate_boundary, parse_boundary
from carbonaware.sci.boundary import BoundaryResult, ComponentResult

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "sci"
PUBLISHED = EXAMPLES / "eshop.yaml"
RECOMPUTED = EXAMPLES / "eshop-recomputed.yaml"
TOLERANCE = 1e-3  # 0.1 %


def _evaluate(path: Path) -> BoundaryResult:
    return evaluate_boundary(parse_boundary(path.read_text(encoding="utf-8"), source=str(path)))


def _component(result: BoundaryResult, name: str) -> ComponentResult:
    return next(c for c in result.components if c.name == name)


# Figures as printed in Green-Software-Foundation/sci-guide use-case-submissions/msft-eShoppen.md.
PUBLISHED_SCI = {
    "app server": 66.6906,
    "database server": 50.76,
    "client laptop": 24.96,
    "network": 14.54,
}
PUBLISHED_ENERGY = {
    "app server": 0.0656,
    "database server": 0.048,
    "client laptop": 0.0036 + 0.01216,
    "network": 0.01529,
}
PUBLISHED_EMBODIED = {"database server": 5.112, "client laptop": 9.98}
PUBLISHED_TOTAL = 156.9586


def test_eshop_reproduces_every_published_figure() -> None:
    result = _evaluate(PUBLISHED)
    for name, grams in PUBLISHED_SCI.items():
        assert _component(result, name).total_grams == pytest.approx(grams, rel=TOLERANCE), name
    for name, kwh in PUBLISHED_ENERGY.items():
        assert _component(result, name).energy_kwh == pytest.approx(kwh, rel=TOLERANCE), name
    for name, grams in PUBLISHED_EMBODIED.items():
        assert _component(result, name).embodied_grams == pytest.approx(grams, rel=TOLERANCE)
    assert _component(result, "network").embodied_grams == 0
    assert all(c.intensity == 951 for c in result.components)
    assert result.total_grams == pytest.approx(PUBLISHED_TOTAL, rel=TOLERANCE)
    assert result.functional_unit.text == "500 users"
    assert result.per_unit_grams == pytest.approx(PUBLISHED_TOTAL / 500, rel=TOLERANCE)


def test_eshop_app_server_embodied_is_computed_from_te_not_the_misprint() -> None:
    # Published as 0.004305 kg; 1205.52 kg x 1/35040 x 2/16 is 0.0043005 kg.
    result = _evaluate(PUBLISHED)
    assert _component(result, "app server").embodied_grams == pytest.approx(4.3005, abs=1e-4)


def test_eshop_recomputed_from_raw_inputs() -> None:
    intensity = 951.0
    life = 4 * 8760.0

    def embodied(te_kg: float, rr: float, tr: float) -> float:
        return te_kg * 1000 * (1 / life) * (rr / tr)

    expected = {
        "app server": 205 * 0.32 / 1000 * intensity + embodied(1205.52, 2, 16),
        "database server": 150 * 0.32 / 1000 * intensity + embodied(1433.12, 2, 16),
        "client laptop": (28 * 0.12 + 12.16 * 0.12) / 1000 * intensity + embodied(350, 1, 1),
        "network": (1.16 + 14.3) * 0.001 * intensity,
    }
    result = _evaluate(RECOMPUTED)
    for name, grams in expected.items():
        assert _component(result, name).total_grams == pytest.approx(grams, rel=1e-9), name
    assert result.total_grams == pytest.approx(sum(expected.values()), rel=1e-9)
    # The corrections move the client and the network away from the published figures.
    assert _component(result, "client laptop").total_grams < PUBLISHED_SCI["client laptop"] - 10
    assert _component(result, "network").total_grams > PUBLISHED_SCI["network"]


def test_cli_prints_table_and_sci_per_500_users() -> None:
    outcome = CliRunner().invoke(app, ["sci", str(PUBLISHED)])
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.output.splitlines()
    app_row = next(line for line in lines if line.startswith("app server"))
    assert app_row.split()[-5:] == ["0.06560", "951", "62.39", "4.301", "66.69"]
    network_row = next(line for line in lines if line.startswith("network"))
    assert network_row.split()[-1] == "14.54"
    assert "SCI = 156.96 gCO2e per R, R = 500 users" in outcome.output
    assert "0.3139 gCO2e per one of the 500 users" in outcome.output


def test_cli_names_the_field_at_fault(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "intensity: 100\n"
        "functionalUnit: {name: run}\n"
        "components:\n"
        "  - name: web\n"
        "    hours: 1\n"
        "    cpu: {tdpWatts: 100}\n"
        "  - name: db\n"
        "    hours: 1\n"
        "    memory: {gib: 4, wats: 3}\n",
        encoding="utf-8",
    )
    outcome = CliRunner().invoke(app, ["sci", str(bad)])
    assert outcome.exit_code == 2
    assert "components[0] (web).cpu: with tdpWatts give exactly one of coefficient or" in (
        outcome.output
    )
    assert "components[1] (db).memory.wats: Extra inputs are not permitted" in outcome.output


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("components: []", "functionalUnit: Field required"),
        ("functionalUnit: {name: run}\ncomponents: [{name: a, hours: 1}]", "no intensity"),
        (
            "intensity: 1\nfunctionalUnit: {name: run, quantity: 0}\n"
            "components: [{name: a, hours: 1}]",
            "functionalUnit.quantity: Input should be greater than 0",
        ),
        (
            "intensity: 1\nfunctionalUnit: {name: run}\ncomponents:\n"
            "  - {name: a, hours: 1, energyKWh: 1, cpu: {energyKWh: 1}}",
            "components[0] (a): energyKWh states the whole component's energy",
        ),
        (
            "intensity: 1\nfunctionalUnit: {name: run}\ncomponents:\n"
            "  - {name: a, hours: 1, cpu: {minWatts: 2, maxWatts: 1, utilisation: 0.5}}",
            "maxWatts must be at least minWatts",
        ),
        (
            "intensity: 1\nfunctionalUnit: {name: run}\ncomponents:\n"
            "  - {name: a, hours: 1, embodied: {totalKgCO2e: 1, reservedResources: 4,"
            " totalResources: 2}}",
            "components[0] (a).embodied: reservedResources cannot exceed totalResources",
        ),
        ("- just\n- a list", "expected a mapping"),
        ("key: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_boundaries_are_rejected_with_their_location(document: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_boundary(document, source="test.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("test.yaml:")


def test_models_and_stated_energy_mix_within_a_component() -> None:
    spec = parse_boundary(
        "intensity: 200\n"
        "pue: 1.5\n"
        "functionalUnit: {name: jobs, quantity: 4}\n"
        "components:\n"
        "  - name: worker\n"
        "    hours: 2\n"
        "    cpu: {minWatts: 1, maxWatts: 5, utilisation: 0.25, cores: 8}\n"
        "    memory: {gib: 32}\n"
        "    storage: {ssdTb: 2, hddTb: 4}\n"
        "    network: {gb: 10}\n"
        "  - name: laptop\n"
        "    hours: 2\n"
        "    intensity: 50\n"
        "    pue: 1\n"
        "    cpu: {tdpWatts: 28, utilisation: 0.5}\n"
        "    embodied: {totalKgCO2e: 350, lifespanYears: 4}\n"
    )
    result = evaluate_boundary(spec)
    worker = _component(result, "worker")
    expected_kwh = (
        8 * (1 + 0.25 * 4) * 2 / 1000  # CCF linear, 8 cores
        + 32 * 0.392 * 2 / 1000  # memory
        + (2 * 1.2 + 4 * 0.65) * 2 / 1000  # storage
        + 10 * 0.001  # network
    ) * 1.5
    assert worker.energy_kwh == pytest.approx(expected_kwh)
    assert worker.operational_grams == pytest.approx(expected_kwh * 200)
    laptop = _component(result, "laptop")
    assert laptop.energy_kwh == pytest.approx(2 * 28 * 0.75 / 1000)
    assert laptop.operational_grams == pytest.approx(laptop.energy_kwh * 50)
    assert laptop.embodied_grams == pytest.approx(350e3 * 2 / 35040)
    assert result.per_unit_grams == pytest.approx(result.total_grams / 4)


def test_the_documented_example_boundary_is_valid() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "sci.md"
    text = docs.read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    result = evaluate_boundary(parse_boundary(block, source="docs/sci.md"))
    assert [c.name for c in result.components] == ["worker", "laptop", "legacy box"]
    legacy = _component(result, "legacy box")
    assert legacy.energy_kwh == pytest.approx(3.2 * 1.1)  # stated energy, times the default PUE
    assert result.functional_unit.text == "30 runs"
