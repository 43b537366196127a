"""The calculator against a real BoaviztAPI server on loopback.

BoaviztAPI (AGPL-3.0) is installed from PyPI into its own virtual environment under the
cache directory, never into ours, and started with uvicorn on a free loopback port. The
tests ask it for instance figures through ``carbonaware sci --boavizta-url`` and check they
are BoaviztAPI's own answers, used in place of the tables, with the tables as fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonaware.cli import app

from .operatorproc import free_port

pytestmark = pytest.mark.integration

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "carbon-aware-operator"
VENV = CACHE / "boaviztapi-venv"
VERSION = "2.5.0"
STARTUP_TIMEOUT = 120.0


def _install() -> Path:
    """uvicorn of a venv holding boaviztapi, created on first use."""
    uvicorn = VENV / "bin" / "uvicorn"
    marker = VENV / f".boaviztapi-{VERSION}"
    if uvicorn.exists() and marker.exists():
        return uvicorn
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", f"boaviztapi=={VERSION}", "uvicorn"],
        check=True,
    )
    marker.touch()
    return uvicorn


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def boavizta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uvicorn = _install()
    port = free_port()
    log = tmp_path_factory.mktemp("boavizta") / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(uvicorn), "boaviztapi.main:app", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                _get(f"{url}/v1/cloud/instance/all_providers")
                break
            except OSError:
                assert time.monotonic() < deadline, "BoaviztAPI did not start in time"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


BOUNDARY = """\
intensity: 400
functionalUnit: {name: day}
components:
  - {name: api, instanceType: c5.4xlarge, cloud: aws, count: 2, hours: 24, utilisation: 0.5}
  - {name: made-up, instanceType: zz9.large, cloud: aws, hours: 24, utilisation: 0.5,
     vcpus: 2}
  - {name: azure, instanceType: D2 v2, cloud: azure, hours: 24, utilisation: 0.5}
"""


def test_the_calculator_uses_boaviztapi_figures_with_the_tables_as_fallback(
    boavizta: str, tmp_path: Path
) -> None:
    boundary = tmp_path / "boundary.yaml"
    boundary.write_text(BOUNDARY, encoding="utf-8")
    outcome = CliRunner().invoke(app, ["sci", "--json", "--boavizta-url", boavizta, str(boundary)])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.output)
    api, made_up, azure = document["components"]

    # BoaviztAPI's own answers for c5.4xlarge, asked directly.
    query = "provider=aws&instance_type=c5.4xlarge&verbose=true&criteria=gwp"
    probe = _get(f"{boavizta}/v1/cloud/instance?{query}&duration=1")
    assert isinstance(probe, dict)
    life = probe["verbose"]["hours_life_time"]["value"]
    whole = _get(f"{boavizta}/v1/cloud/instance?{query}&duration={life}")
    assert isinstance(whole, dict)
    inputs = {i["name"]: i for i in api["inputs"]}
    assert inputs["embodiedKgCO2e"]["source"] == "boavizta"
    assert inputs["embodiedKgCO2e"]["value"] == whole["impacts"]["gwp"]["embedded"]["value"]
    assert inputs["vcpus"]["value"] == whole["verbose"]["vcpu"]["value"] == 16
    assert inputs["lifespanYears"]["value"] == pytest.approx(life / 8760)
    # M = the instance's whole-life share x 24 h / its life, for 2 instances.
    expected_m = 2 * whole["impacts"]["gwp"]["embedded"]["value"] * 1000 * 24 / life
    assert api["embodiedGrams"] == pytest.approx(expected_m)
    # E from BoaviztAPI's load curve at 50 %: its avg_power for that load, memory included.
    request = urllib.request.Request(
        f"{boavizta}/v1/cloud/instance?verbose=true&criteria=gwp&duration=1",
        data=json.dumps({"provider": "aws", "instance_type": "c5.4xlarge", "usage": {
            "time_workload": [{"time_percentage": 100, "load_percentage": 50}]}}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        watts = json.loads(answer.read())["verbose"]["avg_power"]["value"]
    assert api["partsKWh"]["cpu"] == pytest.approx(2 * watts * 24 / 1000)
    assert api["partsKWh"]["memory"] == 0
    assert api["methods"]["cpu"] == "boavizta-curve(50%)"

    # A type BoaviztAPI does not know (it would only fuzzy-match) falls back to the defaults;
    # one it knows on another cloud comes from it too; the tables answer when it is silent.
    made_up_sources = {i["name"]: i["source"] for i in made_up["inputs"]}
    assert made_up_sources["embodiedKgCO2e"].startswith("default-per-vcpu(")
    assert {i["name"]: i["source"] for i in azure["inputs"]}["vcpus"] in {"boavizta", "ccf-table"}


def test_an_unreachable_boaviztapi_leaves_the_tables_in_charge(tmp_path: Path) -> None:
    boundary = tmp_path / "boundary.yaml"
    boundary.write_text(BOUNDARY, encoding="utf-8")
    dead = f"http://127.0.0.1:{free_port()}"
    outcome = CliRunner().invoke(app, ["sci", "--json", "--boavizta-url", dead, str(boundary)])
    assert outcome.exit_code == 0, outcome.output
    api = json.loads(outcome.output[outcome.output.index("{") :])["components"][0]
    assert {i["name"]: i["source"] for i in api["inputs"]}["embodiedKgCO2e"] == "ccf-table"


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        found = json.loads(answer.read())
    assert isinstance(found, dict)
    return found


def test_server_figures_for_a_servertarget_come_from_boaviztapi(boavizta: str) -> None:
    import asyncio

    from carbonaware.machinedata.boavizta import BoaviztaClient
    from carbonaware.sci.machines import machine_from_figures

    async def ask() -> object:
        async with BoaviztaClient(boavizta) as client:
            return await client.server(16, 64.0)

    figures = asyncio.run(ask())
    config = {"cpu": {"units": 1, "core_units": 8}, "ram": [{"units": 1, "capacity": 64.0}]}

    def body(load: float) -> dict[str, object]:
        return {"model": {"type": "rack"}, "configuration": config,
                "usage": {"time_workload": [{"time_percentage": 100,
                                             "load_percentage": load}]}}  # fmt: skip

    probe = _post(f"{boavizta}/v1/server/?verbose=true&criteria=gwp&duration=1", body(50))
    life = probe["verbose"]["hours_life_time"]["value"]  # type: ignore[index]
    whole = _post(f"{boavizta}/v1/server/?verbose=true&criteria=gwp&duration={life}", body(50))
    full = _post(f"{boavizta}/v1/server/?verbose=true&criteria=gwp&duration=1", body(100))
    assert figures.embodied_kg == whole["impacts"]["gwp"]["embedded"]["value"]  # type: ignore[attr-defined,index]
    assert figures.curve[-1] == (1.0, full["verbose"]["avg_power"]["value"])  # type: ignore[attr-defined,index]
    machine = machine_from_figures(figures)  # type: ignore[arg-type]
    assert machine.embodied_source == "boavizta-server"
    assert machine.embodied_vcpus == 16
    # A run holding all 16 threads at full load draws the server's full-load power.
    assert machine.power.watts(16, 1.0) == pytest.approx(figures.curve[-1][1])  # type: ignore[attr-defined]
