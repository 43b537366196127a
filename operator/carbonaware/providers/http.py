"""The single HTTP helper for every upstream: JSON GETs with timeouts, retries and typed errors.

Used by the grid-intensity providers and by the Prometheus CPU reader, so it knows nothing
about carbon: it turns transport and HTTP failures into the :class:`ProviderError` family.

- 401/403 -> :class:`ProviderAuthError`; 429 -> :class:`ProviderRateLimitedError` with
  ``retry_after``; 5xx, timeouts, refused or reset connections ->
  :class:`ProviderUnavailableError`; a 2xx body that is not JSON (empty, truncated, HTML)
  -> :class:`ProviderDataError`; any other 4xx -> :class:`ProviderRequestError`. An
  ``error_mapper`` given by the caller is consulted first for non-2xx answers, which is how a
  provider says "this 400/404 means the region is unknown" (:class:`UnknownRegionError`).
- 429, 5xx and transport failures are retried ``retries`` times with exponential backoff and
  jitter; on 429 and 503 a ``Retry-After`` header (seconds or an HTTP date) replaces the
  backoff. A ``Retry-After`` longer than ``max_retry_after_seconds`` is not waited out here:
  the error is raised at once with ``retry_after`` set so the caller can back off.
- Header values and basic-auth passwords never appear in messages, reprs or logs; if an
  upstream echoes one back in an error body it is redacted.

Tests inject ``transport`` (``httpx.MockTransport``) and ``sleep`` so retries do not wait.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from carbonaware.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRequestError,
    ProviderUnavailableError,
)
from carbonaware.providers.base import Clock, Outcome, RequestHook, outcome_of, utc_now
from carbonaware.providers.payload import upstream_message

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
QueryParams = Mapping[str, str | int | float]


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A non-2xx answer, as an ``error_mapper`` sees it (no httpx types, no headers)."""

    provider: str
    request: str
    """``GET /path`` without host or query, for messages."""
    status_code: int
    body: Any
    """The parsed JSON body, or None when the body is not JSON."""
    message: str
    """The upstream's own message (from the JSON body) or the start of the text body."""
    retry_after: float | None


ErrorMapper = Callable[[ErrorResponse], ProviderError | None]


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """How a provider's HTTP client behaves; one value shared by all providers of a chain."""

    timeout_seconds: float = 10.0
    retries: int = 2
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    transport: httpx.AsyncBaseTransport | None = None
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    now: Clock = utc_now
    on_request: RequestHook | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class HttpJsonClient:
    """An ``httpx.AsyncClient`` with a base URL that GETs JSON and raises typed errors."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        options: HttpOptions | None = None,
        error_mapper: ErrorMapper | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._options = options or HttpOptions()
        self._error_mapper = error_mapper
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self._options.timeout_seconds),
            transport=self._options.transport,
            headers={"Accept": "application/json", **self._options.extra_headers},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HttpJsonClient(provider={self.provider!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> HttpJsonClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(
        self,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> Any:
        """GET ``url`` (relative to the base URL) and return the decoded JSON body."""
        return await self._request("GET", url, params, headers, basic_auth, None)

    async def post_json(
        self,
        url: str,
        body: Any,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST ``body`` as JSON to ``url`` and return the decoded JSON answer."""
        return await self._request("POST", url, params, headers, None, body)

    async def _request(
        self,
        method: str,
        url: str,
        params: QueryParams | None,
        headers: Mapping[str, str] | None,
        basic_auth: tuple[str, str] | None,
        body: Any,
    ) -> Any:
        request = f"{method} {url.split('?', 1)[0]}"
        secrets = [v for v in (headers or {}).values() if len(v) >= 6]
        # "Bearer <token>": an upstream may echo the token alone
        schemes = [v.partition(" ")[2].strip() for v in secrets]
        secrets += [credential for credential in schemes if len(credential) >= 6]
        if basic_auth is not None:
            # the password, and the header that carries it (base64 of "user:password")
            pair = f"{basic_auth[0]}:{basic_auth[1]}".encode()
            secrets += [basic_auth[1], base64.b64encode(pair).decode()]
        auth = httpx.BasicAuth(*basic_auth) if basic_auth is not None else None
        attempts = self._options.retries + 1
        for attempt in range(1, attempts + 1):
            error, outcome = await self._attempt(
                method, url, request, params, headers, auth, secrets, body
            )
            if error is None:
                self._report(Outcome.OK)
                return outcome
            self._report(outcome)
            if not _retryable(error) or attempt == attempts:
                raise _with_attempts(error, attempt)
            delay: float = (
                error.retry_after if error.retry_after is not None else self._backoff(attempt)
            )
            if delay > self._options.max_retry_after_seconds:
                raise _with_attempts(error, attempt)
            log.info(
                "%s: attempt %d of %d failed (%s); retrying in %.1fs",
                self.provider,
                attempt,
                attempts,
                error.problem,
                delay,
            )
            await self._options.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        url: str,
        request: str,
        params: QueryParams | None,
        headers: Mapping[str, str] | None,
        auth: httpx.BasicAuth | None,
        secrets: Sequence[str],
        body: Any = None,
    ) -> tuple[ProviderError, Outcome] | tuple[None, Any]:
        provider = self.provider
        try:
            query = dict(params) if params else None
            if method == "POST":
                response = await self._client.post(url, params=query, headers=headers, json=body)
            else:
                response = await self._client.get(url, params=query, headers=headers, auth=auth)
        except httpx.TimeoutException:
            timeout = self._options.timeout_seconds
            return ProviderUnavailableError(
                provider, f"{request} timed out after {timeout:g}s"
            ), Outcome.TIMEOUT
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = _redact(str(exc) or type(exc).__name__, secrets)
            return ProviderUnavailableError(
                provider, f"{request} failed: {type(exc).__name__}: {reason}"
            ), Outcome.UNAVAILABLE
        status = response.status_code
        if 200 <= status < 300:
            try:
                return None, json.loads(response.content)
            except ValueError:
                size = len(response.content)
                error: ProviderError = ProviderDataError(
                    provider,
                    f"{request} answered HTTP {status} with a body that is not valid JSON "
                    f"({size} bytes; empty or truncated?)",
                    status_code=status,
                )
                return error, Outcome.BAD_DATA
        error = self._status_error(response, request, secrets)
        return error, outcome_of(error)

    def _status_error(
        self, response: httpx.Response, request: str, secrets: Sequence[str]
    ) -> ProviderError:
        status = response.status_code
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), self._options.now()
            )
        try:
            body: Any = json.loads(response.content)
        except ValueError:
            body = None
        message = upstream_message(body) or response.text[:200].strip()
        message = _redact(message, secrets)
        if self._error_mapper is not None:
            mapped = self._error_mapper(
                ErrorResponse(self.provider, request, status, body, message, retry_after)
            )
            if mapped is not None:
                return mapped
        return default_status_error(self.provider, request, status, message, retry_after)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        ceiling = min(
            self._options.backoff_max_seconds,
            self._options.backoff_base_seconds * 2.0 ** (attempt - 1),
        )
        return ceiling / 2 + self._options.jitter() * ceiling / 2

    def _report(self, outcome: Outcome) -> None:
        if self._options.on_request is not None:
            self._options.on_request(self.provider, outcome.value)


def default_status_error(
    provider: str, request: str, status: int, message: str, retry_after: float | None
) -> ProviderError:
    """The standard mapping of a non-2xx status to the ProviderError family."""
    detail = f": {message}" if message else ""
    answered = f"{request} answered HTTP {status}"
    if status in (401, 403):
        return ProviderAuthError(
            provider, f"{answered}, credentials rejected or missing{detail}", status_code=status
        )
    if status == 429:
        wait = f", retry after {retry_after:g}s" if retry_after is not None else ""
        return ProviderRateLimitedError(
            provider,
            f"{answered}, rate limited{wait}{detail}",
            status_code=status,
            retry_after=retry_after,
        )
    if status >= 500:
        return ProviderUnavailableError(
            provider,
            f"{answered}, server error{detail}",
            status_code=status,
            retry_after=retry_after,
        )
    return ProviderRequestError(
        provider, f"{answered}, request rejected{detail}", status_code=status
    )


def _retryable(error: ProviderError) -> bool:
    return isinstance(error, ProviderUnavailableError | ProviderRateLimitedError)


def _with_attempts(error: ProviderError, attempts: int) -> ProviderError:
    if attempts == 1 or not _retryable(error):
        return error
    return type(error)(
        error.provider,
        f"{error.problem} (after {attempts} attempts)",
        status_code=error.status_code,
        retry_after=error.retry_after,
    )


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
