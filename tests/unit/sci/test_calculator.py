"""`carbonaware sci` with instance names: the Endava case study, JSON, breakdowns, sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonaware.cli import app
from carbonaware.errors import SpecError
from carbonaware.sci import InstanceFigures, evaluate_boundary, parse_boundary
from carbonaware.sci.boundary import BoundaryResult, ComponentResult

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "sci"
ENDAVA = EXAMPLES / "endava-fraud-detection.yaml"
TOLERANCE = 1e-3  # 0.1 %

# Climatiq's per-instance answers as listed in the case study (kWh per instance per day,
# CPU + memory, PUE included), and the instance counts of its Table 2.
CLIMATIQ_KWH = {
    "m5.xlarge": 0.128747136 + 0.18344801753628673,
    "c5.4xlarge": 0.514988544 + 0.36689603507257346,
    "m5.4xlarge": 0.514988544 + 0.7337920701451469,
    "m5.2xlarge": 0.257494272 + 0.36689603507257346,
    "m5.large": 0.064373568 + 0.09172400876814336,
    "r5.4xlarge": 0.514988544 + 1.4675841402902938,
    "t3a.large": 0.064373568 + 0.09172400876814336,
    "r5.2xlarge": 0.257494272 + 0.7337920701451469,
    "t3a.xlarge": 0.128747136 + 0.18344801753628673,
}
COUNTS = {"m5.xlarge": 2, "c5.4xlarge": 3, "m5.4xlarge": 3, "m5.2xlarge": 3, "m5.large": 3,
          "r5.4xlarge": 3, "t3a.large": 13, "r5.2xlarge": 6, "t3a.xlarge": 1}  # fmt: skip
# The case's "M x Instances" column (kg).
CASE_M_KG = {"m5.xlarge": 0.122557078, "c5.4xlarge": 0.613744292, "m5.4xlarge": 0.735342466,
             "m5.2xlarge": 0.367671233, "m5.large": 0.091917808, "r5.4xlarge": 0.978493151,
             "t3a.large": 4.779726027, "r5.2xlarge": 0.978493151,
             "t3a.xlarge": 0.735342466}  # fmt: skip
PUBLISHED_SCI_PER_DAY = 20_549.0


def _evaluate(path: Path) -> BoundaryResult:
    return evaluate_boundary(parse_boundary(path.read_text(encoding="utf-8"), source=str(path)))


def _by_type(result: BoundaryResult) -> dict[str, ComponentResult]:
    return {c.instance_type or "": c for c in result.components}


def test_endava_case_reproduces_from_instance_names() -> None:
    result = _evaluate(ENDAVA)
    found = _by_type(result)
    assert sum(c.count for c in result.components) == 37
    for name, kwh in CLIMATIQ_KWH.items():
        # Every instance's energy is Climatiq's answer in the case study.
        assert found[name].energy_kwh == pytest.approx(kwh * COUNTS[name], rel=1e-4), name
        assert found[name].embodied_grams == pytest.approx(CASE_M_KG[name] * 1000, rel=TOLERANCE)
    assert result.energy_kwh == pytest.approx(23.5947, rel=1e-4)
    assert result.embodied_grams == pytest.approx(9403.287671, rel=TOLERANCE)
    assert result.total_grams == pytest.approx(PUBLISHED_SCI_PER_DAY, rel=TOLERANCE)
    assert result.functional_unit.text == "1728000 API calls"
    # Nothing about the machines was typed: sizes, hosts and TE came from the tables.
    for component in result.components:
        sources = {i.name: i.source for i in component.inputs}
        for field in ("vcpus", "memoryGiB", "hostVcpus", "embodiedKgCO2e"):
            assert sources[field] == "ccf-table", (component.name, field)


def test_the_cli_prints_r_as_written_and_the_breakdowns() -> None:
    outcome = CliRunner().invoke(app, ["sci", str(ENDAVA)])
    assert outcome.exit_code == 0, outcome.output
    assert "R = 1728000 API calls" in outcome.output
    assert "e+0" not in outcome.output
    assert "Energy by part, before PUE" in outcome.output
    energy_table = outcome.output.split("Energy by part, before PUE")[1]
    t3a = next(line for line in energy_table.splitlines() if line.startswith("MongoDB service"))
    # count, CPU kWh (13 x 2 vCPU x 1.1816 W x 24 h), memory kWh (13 x 8 GiB x 0.42091 W x 24 h)
    assert t3a.split()[4:7] == ["13", "0.73732", "1.05059"]
    assert "hostVcpus" in outcome.output
    assert "aws:t3a.large (EPYC 1st Gen; output/coefficients-aws-embodied.csv)" in outcome.output


def test_the_cli_prints_json() -> None:
    outcome = CliRunner().invoke(app, ["sci", "--json", str(ENDAVA)])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.output)
    assert document["functionalUnit"]["quantity"] == 1728000
    assert document["functionalUnit"]["text"] == "1728000 API calls"
    api = next(c for c in document["components"] if c["name"] == "API")
    assert api["count"] == 3
    assert api["instanceType"] == "c5.4xlarge"
    assert set(api["partsKWh"]) == {"cpu", "memory", "storage", "network", "total"}
    inputs = {i["name"]: i for i in api["inputs"]}
    assert inputs["embodiedKgCO2e"]["value"] == 1344.29
    assert inputs["minWatts"]["source"] == "boundary"
    assert document["totalGrams"] == pytest.approx(
        sum(c["totalGrams"] for c in document["components"])
    )


def _one(component: str, extra: str = "") -> BoundaryResult:
    return evaluate_boundary(
        parse_boundary(
            f"intensity: 100\n{extra}functionalUnit: {{name: day}}\ncomponents:\n  - {component}\n"
        )
    )


def test_table_figures_are_used_unless_overridden() -> None:
    plain = _one("{name: w, instanceType: t3.large, cloud: aws, hours: 10, utilisation: 0.5}")
    (c,) = plain.components
    # t3.large: 2 vCPUs (Skylake 0.613..4.1042 W), 8 GiB, host 8 vCPUs, TE 1610.79 kg.
    assert c.part_kwh("cpu") == pytest.approx(2 * (0.613 + 0.5 * (4.1042 - 0.613)) * 10 / 1000)
    assert c.part_kwh("memory") == pytest.approx(8 * 0.392 * 10 / 1000)
    assert c.embodied_grams == pytest.approx(1610.79e3 * 10 / 35040 * 2 / 8)
    overridden = _one(
        "{name: w, instanceType: t3.large, cloud: aws, hours: 10, utilisation: 0.5,"
        " memoryGB: 8, hostVcpus: 96, embodiedKgCO2e: 1000}"
    )
    (o,) = overridden.components
    assert o.part_kwh("memory") == pytest.approx(8 / 1.073741824 * 0.392 * 10 / 1000)
    assert o.embodied_grams == pytest.approx(1000e3 * 10 / 35040 * 2 / 96)
    sources = {i.name: i.source for i in o.inputs}
    assert sources["hostVcpus"] == "boundary"
    assert sources["vcpus"] == "ccf-table"


def test_an_unknown_type_needs_vcpus_and_then_uses_documented_defaults() -> None:
    with pytest.raises(SpecError, match="give vcpus"):
        _one("{name: w, instanceType: zz9.large, cloud: aws, hours: 1, utilisation: 0.1}")
    result = _one("{name: w, instanceType: zz9.large, cloud: aws, hours: 1, utilisation: 0.1,"
                  " vcpus: 2}")  # fmt: skip
    sources = {i.name: i.source for i in result.components[0].inputs}
    assert sources["minWatts"] == "ccf-average(aws)"
    assert sources["embodiedKgCO2e"].startswith("default-per-vcpu(")


def test_a_catalog_answer_wins_over_the_tables_and_says_so() -> None:
    spec = parse_boundary(
        "intensity: 100\nfunctionalUnit: {name: day}\ncomponents:\n"
        "  - {name: w, instanceType: c5.4xlarge, cloud: aws, hours: 2, utilisation: 0.5}\n"
    )
    figures = InstanceFigures(
        name="c5.4xlarge", cloud="aws", vcpus=16, memory_gib=32, host_vcpus=16, min_watts=1.3,
        max_watts=9.4, embodied_kg=800.0, source="boavizta", lifespan_years=6.0,
        curve=((0.0, 21.3), (0.1, 48.0), (0.5, 111.5), (1.0, 151.2)), power_includes_memory=True,
    )  # fmt: skip
    (c,) = evaluate_boundary(spec, {("aws", "c5.4xlarge"): figures}).components
    assert c.part_kwh("cpu") == pytest.approx(111.5 * 2 / 1000)  # the curve at 50 %
    assert c.part_kwh("memory") == 0  # already inside BoaviztAPI's instance power
    assert c.embodied_grams == pytest.approx(800e3 * 2 / (6 * 8760))
    assert {i.name: i.source for i in c.inputs}["embodiedKgCO2e"] == "boavizta"


@pytest.mark.parametrize(
    ("component", "message"),
    [
        ("{name: a, hours: 1, cloud: aws}", "cloud and count describe an instanceType"),
        ("{name: a, hours: 1, vcpus: 4}", "override an instanceType"),
        ("{name: a, hours: 1, instanceType: m5.large}", "give utilisation"),
        (
            "{name: a, hours: 1, instanceType: m5.large, utilisation: 0.1, memoryGiB: 1,"
            " memoryGB: 1}",
            "memoryGiB or memoryGB",
        ),
        (
            "{name: a, hours: 1, instanceType: m5.large, utilisation: 0.1, minWatts: 1}",
            "minWatts and maxWatts go together",
        ),
    ],
)
def test_instance_fields_are_checked(component: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _one(component)
