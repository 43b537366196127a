"""build_provider: the chain described by OperatorSettings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from carbonaware.config import OperatorSettings
from carbonaware.errors import ConfigError, ProviderAuthError
from carbonaware.providers.electricitymaps import ElectricityMapsProvider
from carbonaware.providers.factory import build_provider, provider_names
from carbonaware.providers.static import StaticProvider
from carbonaware.providers.trace import TraceProvider
from carbonaware.providers.ukci import UkCarbonIntensityProvider
from carbonaware.providers.watttime import WattTimeProvider

from .helpers import FakeClock, FakeUpstream, Reply, Sleeps

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
TOKEN = "em-factory-t0ken"
PASSWORD = "wt-factory-pa55"


def settings(**values: object) -> OperatorSettings:
    return OperatorSettings.model_validate(values)


async def test_chain_in_the_configured_order_with_settings_applied() -> None:
    chain = build_provider(
        settings(
            providers="ukci, electricitymaps,watttime,static,trace",
            electricitymaps_token=TOKEN,
            watttime_username="alice",
            watttime_password=PASSWORD,
            static_intensity=250,
        )
    )
    kinds = [type(p) for p in chain.providers]
    assert kinds == [
        UkCarbonIntensityProvider,
        ElectricityMapsProvider,
        WattTimeProvider,
        StaticProvider,
        TraceProvider,
    ]
    trace = chain.providers[-1]
    assert isinstance(trace, TraceProvider)
    assert trace.trace.name.startswith("gb_neso")
    assert trace.attribution == "Carbon Intensity API, NESO (CC BY 4.0)"
    assert TOKEN not in repr(chain)
    assert PASSWORD not in repr(chain)
    await chain.aclose()


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"providers": ""}, "empty"),
        ({"providers": "ukci,carbon-magic"}, "unknown provider"),
        ({"providers": "trace,trace"}, "twice"),
        ({"providers": "ukci,electricitymaps"}, "ELECTRICITYMAPS_TOKEN"),
        ({"providers": "watttime", "watttime_username": "alice"}, "WATTTIME_PASSWORD"),
        ({"providers": "static"}, "STATIC_INTENSITY"),
        ({"providers": "trace", "trace_path": "/nonexistent/trace.csv"}, "cannot read trace"),
        ({"providers": "static", "static_table": "1,2"}, "has 2 values"),
    ],
)
def test_incomplete_settings_are_config_errors(values: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        build_provider(settings(**values))


def test_provider_names_are_normalised() -> None:
    assert provider_names(settings(providers=" UKCI , Trace ")) == ["ukci", "trace"]


async def test_http_settings_reach_the_providers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/latest", Reply({"message": "invalid token"}, status=401)
    )
    outcomes: list[tuple[str, str]] = []
    fetches: list[tuple[str, str]] = []
    chain = build_provider(
        settings(
            providers="electricitymaps",
            electricitymaps_base_url="http://em.test/v3",
            electricitymaps_token=SecretStr(TOKEN),
            provider_retries=0,
        ),
        clock=FakeClock(NOW),
        transport=upstream.transport,
        sleep=Sleeps(),
        on_request=lambda name, outcome: outcomes.append((name, outcome)),
        on_fetch=lambda name, outcome: fetches.append((name, outcome)),
    )
    with pytest.raises(
        ProviderAuthError, match=r"^chain: .*HTTP 401, credentials rejected"
    ) as caught:
        await chain.current("DE")
    assert upstream.requests[0].url.host == "em.test"
    assert upstream.requests[0].headers["auth-token"] == TOKEN
    assert outcomes == [("electricitymaps", "auth_error")]
    assert fetches == [("electricitymaps", "auth_error")]
    assert TOKEN not in str(caught.value)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    await chain.aclose()


async def test_default_chain_replays_the_gb_trace() -> None:
    clock = FakeClock(datetime(2026, 11, 22, 5, 37, tzinfo=UTC))
    chain = build_provider(OperatorSettings(providers="trace"), clock=clock)
    points = await chain.forecast("GB", clock.now, clock.now + timedelta(hours=2))
    assert len(points) == 5
    assert {p.source for p in points} == {"trace"}
    await chain.aclose()
