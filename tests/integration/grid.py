"""A switchable grid served in the UK Carbon Intensity API's shapes, for operator tests.

``grid`` is a fixture: import it into a test module (``from .grid import grid``) to get a
local server whose intensity the test sets (``intensity.now = 50.0``), and ``operator_for``
builds an operator process that reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .operatorproc import OperatorProcess, operator_env
from .ukapi import UkApiServer, serve_uk_api


class Intensity:
    """A switchable grid: ``now`` is the value of every period from now on, unless
    ``low_from`` is set, in which case periods starting at or after it are ``low``."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.low_from: datetime | None = None
        self.low = 40.0

    def __call__(self, start: datetime) -> float:
        if self.low_from is not None and start >= self.low_from:
            return self.low
        return self.now


@pytest.fixture
def grid() -> Iterator[tuple[Intensity, UkApiServer]]:
    intensity = Intensity(now=300.0)
    with serve_uk_api(intensity) as server:
        yield intensity, server


def operator_for(plane: Any, server: UkApiServer, log: Path, **settings: Any) -> OperatorProcess:
    """An operator process on ``plane`` reading intensities from ``server`` (not started)."""
    env = operator_env(
        plane.kubeconfig,
        providers="ukci",
        ukci_base_url=server.url,
        provider_cache_ttl_seconds=1,
        default_region="GB",
        **settings,
    )
    return OperatorProcess(env, log)
