"""Region snapshots: an unknown region's error is kept once, and logged once, not per tick."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.config import OperatorSettings
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.metrics import Metrics
from carbonaware.providers.factory import build_provider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def test_unknown_region_snapshot_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="carbonaware.handlers.intensity")
    # parse_region refuses "XX" before any request: no server is needed
    settings = OperatorSettings(providers="ukci", ukci_base_url="http://127.0.0.1:9")
    regions = RegionIntensity(build_provider(settings), Metrics())

    first = await regions.snapshot("XX", NOW)
    for tick in range(1, 4):
        await regions.refresh(["XX"], NOW + timedelta(seconds=tick))

    last = regions.get("XX")
    assert last is not None
    assert first.current is None
    assert first.view is None
    assert first.error is not None
    assert first.error.count("region 'XX' is not a GB region key") == 1
    # later rounds are served from the cache's error back-off: same problem, same words
    assert last.taken > first.taken
    assert last.error == first.error
    warnings = [r for r in caplog.records if "intensity for region XX" in r.getMessage()]
    assert len(warnings) == 1
