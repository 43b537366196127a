"""HttpJsonClient: status mapping, retries, Retry-After, timeouts, bad JSON, secrets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest

from carbonaware.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRequestError,
    ProviderUnavailableError,
    UnknownRegionError,
)
from carbonaware.providers.http import ErrorResponse, HttpJsonClient, HttpOptions, parse_retry_after

from .helpers import FakeClock, FakeUpstream, Reply, Sleeps, options

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)


def client(
    upstream: FakeUpstream,
    *,
    sleeps: Sleeps | None = None,
    retries: int = 2,
    outcomes: list[tuple[str, str]] | None = None,
    **kwargs: object,
) -> HttpJsonClient:
    opts = options(
        upstream, clock=FakeClock(NOW), sleeps=sleeps, retries=retries, outcomes=outcomes
    )
    return HttpJsonClient("upstream", "http://upstream.test", options=opts, **kwargs)  # type: ignore[arg-type]


async def test_returns_decoded_json_and_sends_params() -> None:
    upstream = FakeUpstream().route("/data", Reply({"value": 42}))
    async with client(upstream) as http:
        assert await http.get_json("/data", params={"zone": "DE", "n": 3}) == {"value": 42}
    (request,) = upstream.requests
    assert request.url.params["zone"] == "DE"
    assert request.url.params["n"] == "3"
    assert request.headers["Accept"] == "application/json"


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_not_retried(status: int) -> None:
    upstream = FakeUpstream().route("/data", Reply({"message": "bad token"}, status=status))
    async with client(upstream) as http:
        with pytest.raises(ProviderAuthError) as caught:
            await http.get_json("/data")
    assert len(upstream.requests) == 1
    assert caught.value.status_code == status
    assert str(caught.value).startswith("upstream: GET /data answered HTTP")
    assert "bad token" in str(caught.value)


async def test_429_waits_exactly_what_retry_after_says_then_succeeds() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route(
        "/data",
        Reply({"message": "slow down"}, status=429, headers={"Retry-After": "7"}),
        Reply({"ok": True}),
    )
    async with client(upstream, sleeps=sleeps) as http:
        assert await http.get_json("/data") == {"ok": True}
    assert sleeps.calls == [7.0]
    assert len(upstream.requests) == 2


async def test_429_retry_after_as_http_date_is_relative_to_the_clock() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route(
        "/data",
        Reply(status=429, headers={"Retry-After": "Thu, 14 Mar 2024 11:10:30 GMT"}),
        Reply({"ok": True}),
    )
    async with client(upstream, sleeps=sleeps) as http:
        await http.get_json("/data")
    assert sleeps.calls == [30.0]


async def test_429_that_never_clears_raises_rate_limited_with_retry_after() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route("/data", Reply(status=429, headers={"Retry-After": "5"}))
    async with client(upstream, sleeps=sleeps, retries=2) as http:
        with pytest.raises(ProviderRateLimitedError) as caught:
            await http.get_json("/data")
    assert caught.value.retry_after == 5.0
    assert caught.value.status_code == 429
    assert sleeps.calls == [5.0, 5.0]
    assert "after 3 attempts" in str(caught.value)


async def test_retry_after_longer_than_the_cap_is_not_waited_out() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route("/data", Reply(status=429, headers={"Retry-After": "3600"}))
    async with client(upstream, sleeps=sleeps) as http:
        with pytest.raises(ProviderRateLimitedError) as caught:
            await http.get_json("/data")
    assert sleeps.calls == []
    assert caught.value.retry_after == 3600.0


async def test_503_honours_retry_after() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route(
        "/data", Reply(status=503, headers={"Retry-After": "12"}), Reply({"ok": 1})
    )
    async with client(upstream, sleeps=sleeps) as http:
        await http.get_json("/data")
    assert sleeps.calls == [12.0]


async def test_500_is_retried_with_exponential_backoff_then_unavailable() -> None:
    sleeps = Sleeps()
    outcomes: list[tuple[str, str]] = []
    upstream = FakeUpstream().route("/data", Reply({"message": "boom"}, status=500))
    async with client(upstream, sleeps=sleeps, retries=3, outcomes=outcomes) as http:
        with pytest.raises(ProviderUnavailableError) as caught:
            await http.get_json("/data")
    assert len(upstream.requests) == 4
    # base 0.5 s doubling, "equal jitter" with jitter fixed at 0.5: 3/4 of each ceiling.
    assert sleeps.calls == [0.375, 0.75, 1.5]
    assert caught.value.status_code == 500
    assert "server error" in str(caught.value)
    assert outcomes == [("upstream", "unavailable")] * 4


async def test_backoff_jitter_spreads_between_half_and_full_ceiling() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route("/data", Reply(status=502))
    values = iter([0.0, 1.0])
    opts = HttpOptions(
        retries=2, transport=upstream.transport, sleep=sleeps, jitter=lambda: next(values)
    )
    async with HttpJsonClient("upstream", "http://upstream.test", options=opts) as http:
        with pytest.raises(ProviderUnavailableError):
            await http.get_json("/data")
    assert sleeps.calls == [0.25, 1.0]


async def test_timeouts_are_unavailable_and_reported_as_timeout() -> None:
    outcomes: list[tuple[str, str]] = []
    upstream = FakeUpstream().route("/data", Reply(error=httpx.ReadTimeout("read timed out")))
    async with client(upstream, retries=1, outcomes=outcomes) as http:
        with pytest.raises(ProviderUnavailableError) as caught:
            await http.get_json("/data")
    assert "timed out after 10s" in str(caught.value)
    assert outcomes == [("upstream", "timeout"), ("upstream", "timeout")]


async def test_connection_refused_is_unavailable() -> None:
    upstream = FakeUpstream().route("/data", Reply(error=httpx.ConnectError("refused")))
    async with client(upstream, retries=0) as http:
        with pytest.raises(ProviderUnavailableError, match="ConnectError"):
            await http.get_json("/data")


@pytest.mark.parametrize("body", [b"", b'{"data": [{"from": "2024-03-14T1', b"<html>oops</html>"])
async def test_non_json_body_is_a_data_error_and_not_retried(body: bytes) -> None:
    outcomes: list[tuple[str, str]] = []
    upstream = FakeUpstream().route("/data", Reply(body))
    async with client(upstream, outcomes=outcomes) as http:
        with pytest.raises(ProviderDataError, match="not valid JSON"):
            await http.get_json("/data")
    assert len(upstream.requests) == 1
    assert outcomes == [("upstream", "bad_data")]


async def test_other_4xx_is_a_request_error_unless_the_mapper_says_otherwise() -> None:
    upstream = FakeUpstream().route("/data", Reply({"message": "no such zone"}, status=404))
    async with client(upstream) as http:
        with pytest.raises(ProviderRequestError, match="HTTP 404"):
            await http.get_json("/data")

    seen: list[ErrorResponse] = []

    def mapper(response: ErrorResponse) -> ProviderError | None:
        seen.append(response)
        if "zone" in response.message:
            return UnknownRegionError(response.provider, response.message)
        return None

    async with client(upstream, error_mapper=mapper) as http:
        with pytest.raises(UnknownRegionError):
            await http.get_json("/data")
    assert seen[0].status_code == 404
    assert seen[0].body == {"message": "no such zone"}
    assert seen[0].request == "GET /data"


async def test_secrets_never_reach_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "tok-5ecr3t-value"
    upstream = FakeUpstream().route(
        "/data",
        Reply({"message": f"token {secret} has expired"}, status=500),
        Reply({"message": f"token {secret} is invalid"}, status=401),
    )
    caplog.set_level(logging.DEBUG)
    async with client(upstream) as http:
        with pytest.raises(ProviderAuthError) as caught:
            await http.get_json("/data", headers={"auth-token": secret})
        assert secret not in repr(http)
    assert upstream.requests[0].headers["auth-token"] == secret
    assert secret not in str(caught.value)
    assert "[redacted]" in str(caught.value)
    assert all(secret not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Thu, 14 Mar 2024 11:12:00 GMT", 120.0),
        ("Thu, 14 Mar 2024 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected
