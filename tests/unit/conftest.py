"""Unit-test settings shared by every module.

Hypothesis's per-example deadline (200 ms by default) is a wall-clock assertion, and
``make test`` runs these tests beside the integration suite on a loaded machine: properties are
checked without it (tests never assert on wall time; speed is measured in ``bench/``).

The CLI's error box wraps its message at the terminal's width, so a message holding a
temporary path was split at a point that moved with the path's length: the terminal the CLI
tests see is wide enough that no message is wrapped.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

settings.register_profile("carbonaware", deadline=None)
settings.load_profile("carbonaware")


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
