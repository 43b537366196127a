"""Build the provider chain described by :class:`OperatorSettings`.

``CARBONAWARE_PROVIDERS`` lists provider names in order (``ukci,trace``); each is built from
its own settings and the chain adds the shared cache. Names: ``ukci``, ``electricitymaps``,
``watttime``, ``static``, ``trace``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import httpx

from carbonaware import data
from carbonaware.config import OperatorSettings
from carbonaware.errors import ConfigError
from carbonaware.providers import electricitymaps, ukci, watttime
from carbonaware.providers.base import Clock, Provider, RequestHook, utc_now
from carbonaware.providers.chain import ProviderChain
from carbonaware.providers.http import HttpOptions, Sleep
from carbonaware.providers.static import StaticProvider, parse_static_table
from carbonaware.providers.trace import TraceProvider
from carbonaware.providers.tracefile import Trace, TraceVintages, load_trace, load_vintages

PROVIDER_NAMES = ("ukci", "electricitymaps", "watttime", "static", "trace")
HTTP_PROVIDERS = frozenset({"ukci", "electricitymaps", "watttime"})
ERROR_BACKOFF_SECONDS = 30.0


def provider_names(settings: OperatorSettings) -> list[str]:
    """The chain's provider names, validated."""
    names = [part.strip().lower() for part in settings.providers.split(",") if part.strip()]
    if not names:
        raise ConfigError("CARBONAWARE_PROVIDERS is empty; name at least one provider")
    unknown = [name for name in names if name not in PROVIDER_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown provider(s) {', '.join(unknown)} in CARBONAWARE_PROVIDERS; "
            f"choose from {', '.join(PROVIDER_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"CARBONAWARE_PROVIDERS names a provider twice: {settings.providers}")
    return names


def trace_home_region(path: Path) -> str | None:
    """The region a shipped trace's data comes from (from its file name), if known."""
    if path.name.startswith("gb_neso"):
        return "GB"
    if path.name.startswith("electricitymaps_"):
        return path.name.split("_")[1]
    return None


def trace_attribution(path: Path) -> str | None:
    """The data owner to credit for a shipped trace (see data/traces/README.md)."""
    if path.name.startswith("gb_neso"):
        return ukci.ATTRIBUTION
    if path.name.startswith("electricitymaps"):
        return electricitymaps.ATTRIBUTION
    return None


def _check_credentials(name: str, settings: OperatorSettings) -> None:
    if name == "electricitymaps":
        token = settings.electricitymaps_token
        if token is None or not token.get_secret_value():
            raise ConfigError("provider electricitymaps needs CARBONAWARE_ELECTRICITYMAPS_TOKEN")
    if name == "watttime" and (
        not settings.watttime_username or settings.watttime_password is None
    ):
        raise ConfigError(
            "provider watttime needs CARBONAWARE_WATTTIME_USERNAME and "
            "CARBONAWARE_WATTTIME_PASSWORD"
        )


def build_single_provider(
    name: str,
    settings: OperatorSettings,
    *,
    http_options: HttpOptions,
    clock: Clock = utc_now,
) -> Provider:
    """One provider from its settings. Raises :class:`ConfigError` when they are incomplete."""
    if name == "ukci":
        return ukci.UkCarbonIntensityProvider(
            settings.ukci_base_url, http_options=http_options, now=clock
        )
    if name == "electricitymaps":
        _check_credentials(name, settings)
        return electricitymaps.ElectricityMapsProvider(
            settings.electricitymaps_token,
            settings.electricitymaps_base_url,
            http_options=http_options,
            now=clock,
        )
    if name == "watttime":
        _check_credentials(name, settings)
        return watttime.WattTimeProvider(
            settings.watttime_username,
            settings.watttime_password,
            settings.watttime_base_url,
            http_options=http_options,
            now=clock,
        )
    if name == "static":
        tables: dict[str, float | tuple[float, ...]] = {}
        if settings.static_intensity is not None:
            tables["*"] = settings.static_intensity
        if settings.static_table:
            tables.update(parse_static_table(settings.static_table))
        return StaticProvider(tables, now=clock)
    if name == "trace":
        path, trace = configured_trace(settings)
        return TraceProvider(
            trace,
            shift_to_now=settings.trace_shift_to_now,
            now=clock,
            attribution=trace_attribution(path),
            home_region=trace_home_region(path),
            vintages=(
                TraceVintages(load_vintages(settings.trace_vintages_path))
                if settings.trace_vintages_path
                else None
            ),
        )
    raise ConfigError(f"unknown provider {name!r}; choose from {', '.join(PROVIDER_NAMES)}")


def configured_trace(settings: OperatorSettings) -> tuple[Path, Trace]:
    """The trace provider's CSV (the embedded GB 2024 unless one is set), loaded with the
    configured columns."""
    path = Path(settings.trace_path) if settings.trace_path else data.GB_2024
    trace = load_trace(
        path,
        time_column=settings.trace_time_column,
        actual_column=settings.trace_actual_column,
        forecast_column=settings.trace_forecast_column,
        index_column=settings.trace_index_column,
    )
    return path, trace


def build_provider(
    settings: OperatorSettings,
    *,
    clock: Clock = utc_now,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
    jitter: Callable[[], float] | None = None,
    on_request: RequestHook | None = None,
    on_fetch: RequestHook | None = None,
) -> ProviderChain:
    """The configured chain with its cache. ``on_request`` sees every HTTP attempt,
    ``on_fetch`` every upstream fetch (cache miss) and every stale answer."""
    options = HttpOptions(
        timeout_seconds=settings.provider_timeout_seconds,
        retries=settings.provider_retries,
        transport=transport,
        now=clock,
        on_request=on_request,
    )
    if sleep is not None:
        options = dataclasses.replace(options, sleep=sleep)
    if jitter is not None:
        options = dataclasses.replace(options, jitter=jitter)
    names = provider_names(settings)
    # Check credentials and build the providers without HTTP clients first, so that a
    # ConfigError leaves no client open.
    for name in names:
        _check_credentials(name, settings)
    built: dict[str, Provider] = {}
    for name in sorted(names, key=lambda n: n in HTTP_PROVIDERS):
        built[name] = build_single_provider(name, settings, http_options=options, clock=clock)
    providers = [built[name] for name in names]
    return ProviderChain(
        providers,
        ttl_seconds=settings.provider_cache_ttl_seconds,
        stale_max_age_seconds=settings.provider_stale_max_age_seconds,
        error_backoff_seconds=min(ERROR_BACKOFF_SECONDS, settings.provider_cache_ttl_seconds),
        clock=clock,
        on_fetch=on_fetch,
    )
