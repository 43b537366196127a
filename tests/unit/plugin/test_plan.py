"""``kubectl carbonaware plan``: rows and the table from fixed objects (golden output)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from carbonaware.plugin.plan import plan_rows, render_plan

from .inputs import (
    DONE,
    HELD,
    HELD_ON_REQUEST,
    NOW,
    PLAIN_DONE,
    PLAIN_HELD,
    RUNNING,
    condition,
)

GOLDEN = Path(__file__).parent / "golden"


def rendered(render: object, *args: object) -> str:
    out = io.StringIO()
    render(*args, Console(file=out, width=200, color_system=None, force_terminal=False))  # type: ignore[operator]
    return out.getvalue()


def check_golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(text)
    assert text == path.read_text()


@pytest.fixture
def update(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))


def test_only_held_and_running_work_soonest_first() -> None:
    rows = plan_rows([HELD, HELD_ON_REQUEST, RUNNING, *DONE], [PLAIN_DONE, PLAIN_HELD])
    assert [(r.namespace, r.name, r.state) for r in rows] == [
        ("ml", "eval", "Running"),
        ("etl", "cron-2", "Held"),
        ("ml", "train-resnet", "Held"),
        ("etl", "nightly", "Held"),
    ]
    held = rows[2]
    assert held.saving_percent == pytest.approx(100 * (182.0 - 61.5) / 182.0)
    assert json.loads(json.dumps(held.to_dict()))["expectedSavingPercent"] == 66.2


def test_plan_table_golden(update: bool) -> None:
    rows = plan_rows([HELD, HELD_ON_REQUEST, RUNNING, *DONE], [PLAIN_DONE, PLAIN_HELD])
    check_golden("plan.txt", rendered(render_plan, rows, NOW), update)


def test_an_empty_plan_says_so() -> None:
    assert rendered(render_plan, [], NOW) == "No held or running work.\n"


def test_a_paused_interruptible_job_is_planned_work_with_the_reason_it_waits() -> None:
    paused = copy.deepcopy(RUNNING)
    paused["status"]["state"] = "Paused"
    paused["status"]["conditions"].append(
        condition("Paused", "WaitingForLowerIntensity", "1.00 h of 3.00 h done")
    )
    [row] = plan_rows([paused], [])
    assert (row.name, row.state, row.reason) == ("eval", "Paused", "WaitingForLowerIntensity")
