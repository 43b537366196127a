"""A chain of providers with fallback, each behind its own cache
(:class:`~carbonaware.providers.caching.CachingProvider`).

:class:`ProviderChain` asks its members in order; the first that answers wins and every
point keeps its own ``source``. Only when every member fails is a stale value served (the
first member's, if it has one), so a fresh fallback is preferred over a stale primary.
When nothing at all is known the chain raises: ``UnknownRegionError`` if every member said
so, else ``ProviderUnavailableError`` listing each member's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import ProviderError, ProviderUnavailableError, UnknownRegionError
from carbonaware.providers.base import Clock, Outcome, Provider, RequestHook, utc_now
from carbonaware.providers.caching import DEFAULT_HORIZON, CachingProvider, ProviderStatus


class ProviderChain:
    """Providers in order with fallback, each behind a :class:`CachingProvider`."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        ttl_seconds: float = 300.0,
        stale_max_age_seconds: float = 3 * 3600.0,
        error_backoff_seconds: float = 30.0,
        forecast_horizon: timedelta = DEFAULT_HORIZON,
        clock: Clock = utc_now,
        on_fetch: RequestHook | None = None,
    ) -> None:
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self.members = [
            CachingProvider(
                provider,
                ttl_seconds=ttl_seconds,
                stale_max_age_seconds=stale_max_age_seconds,
                error_backoff_seconds=error_backoff_seconds,
                forecast_horizon=forecast_horizon,
                serve_stale=False,
                clock=clock,
                on_fetch=on_fetch,
            )
            for provider in providers
        ]
        self._on_fetch = on_fetch
        self._unknown_to: dict[str, set[str]] = {}
        """Members that said they do not know a region, by region (latest calls)."""

    @property
    def name(self) -> str:
        return "chain"

    def region_note(self, region: str, source: str | None) -> str | None:
        """Why the values ``source`` gave for ``region`` are not that region's own: members
        before it do not know the region, or ``source`` stands in for any region."""
        notes = [
            f"{name} does not know region {region!r}"
            for name in sorted(self._unknown_to.get(region, set()))
            if name != source
        ]
        for member in self.members:
            if member.name == source:
                own = getattr(member.provider, "region_note", None)
                note = own(region, source) if callable(own) else None
                if note:
                    notes.append(str(note))
        return "; ".join(notes) or None

    def _remember_unknown(self, region: str, errors: list[ProviderError]) -> None:
        names = {e.provider for e in errors if isinstance(e, UnknownRegionError)}
        if names:
            self._unknown_to[region] = names
        else:
            self._unknown_to.pop(region, None)

    @property
    def providers(self) -> list[Provider]:
        return [member.provider for member in self.members]

    def __repr__(self) -> str:
        return f"ProviderChain([{', '.join(repr(p) for p in self.providers)}])"

    def status(self) -> list[ProviderStatus]:
        return [member.status() for member in self.members]

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()

    async def current(self, region: str) -> IntensityPoint:
        errors: list[ProviderError] = []
        for member in self.members:
            try:
                point = await member.current(region)
            except ProviderError as error:
                errors.append(error)
                continue
            self._remember_unknown(region, errors)
            return point
        for member in self.members:
            stale = member.stale_current(region)
            if stale is not None:
                self._report_stale(member)
                return stale
        raise _combined("the current intensity", region, errors) from errors[-1]

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        errors: list[ProviderError] = []
        for member in self.members:
            try:
                points = await member.forecast(region, start, end)
            except ProviderError as error:
                errors.append(error)
                continue
            if points:
                return points
        for member in self.members:
            stale = member.stale_forecast(region, start, end)
            if stale is not None:
                self._report_stale(member)
                return stale
        if errors:
            raise _combined("a forecast", region, errors) from errors[-1]
        return []

    def _report_stale(self, member: CachingProvider) -> None:
        if self._on_fetch is not None:
            self._on_fetch(member.name, Outcome.STALE.value)


def _combined(what: str, region: str, errors: list[ProviderError]) -> ProviderError:
    """One error for the whole chain: the members' own class when they all failed the same
    way (all unknown region, all auth...), else ProviderUnavailableError."""
    summary = "; ".join(str(error) for error in errors)
    retry_afters = [e.retry_after for e in errors if e.retry_after is not None]
    retry_after = min(retry_afters) if retry_afters else None
    kinds = {type(error) for error in errors}
    if kinds == {UnknownRegionError}:
        return UnknownRegionError("chain", f"no provider knows region {region!r}: {summary}")
    kind = kinds.pop() if len(kinds) == 1 else ProviderUnavailableError
    return kind(
        "chain",
        f"no provider could give {what} for region {region!r}: {summary}",
        retry_after=retry_after,
    )
