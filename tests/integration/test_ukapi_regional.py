"""The local UK Carbon Intensity API server answers regional queries as the provider asks them.

The scale benchmark and any multi-region test rely on it: national and regional values must
come back separately, by region id and by postcode, for the current period and the forecast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.providers.ukci import UkCarbonIntensityProvider

from .ukapi import serve_uk_api

pytestmark = pytest.mark.integration


async def test_regional_current_and_forecast_follow_their_own_values() -> None:
    with serve_uk_api(lambda start: 300.0) as server:
        server.regional["GB-13"] = lambda start: 120.0
        server.regional["GB-RG10"] = lambda start: 45.0
        provider = UkCarbonIntensityProvider(server.url)
        try:
            national = await provider.current("GB")
            london = await provider.current("GB-13")
            reading = await provider.current("gb-rg10")
            now = datetime.now(UTC)
            forecast = await provider.forecast("GB-RG10", now, now + timedelta(hours=24))
        finally:
            await provider.aclose()

    assert (national.intensity, london.intensity, reading.intensity) == (300, 120, 45)
    assert london.is_forecast
    assert reading.is_forecast
    assert len(forecast) >= 48
    assert {point.intensity for point in forecast} == {45}
    assert "/regional/regionid/13" in server.requests
    assert "/regional/postcode/RG10" in server.requests
    assert any(
        path.startswith("/regional/intensity/") and path.endswith("/fw48h/postcode/RG10")
        for path in server.requests
    )
