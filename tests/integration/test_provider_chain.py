"""The provider chain against a real HTTP server on loopback that speaks the UK Carbon
Intensity API: fallback to the trace when the server goes away and back when it returns,
and one upstream request per region however many callers ask at once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from carbonaware.config import OperatorSettings
from carbonaware.errors import ProviderUnavailableError
from carbonaware.providers.chain import ProviderChain
from carbonaware.providers.factory import build_provider

pytestmark = pytest.mark.integration

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
TIME_FORMAT = "%Y-%m-%dT%H:%MZ"


def periods(first: datetime, count: int) -> list[dict[str, Any]]:
    """Half-hourly periods in the API's shape; values are 500 + the period's minute of day,
    far from anything in the GB trace, so the source of a number is unambiguous."""
    start = first - (first - datetime(2024, 1, 1, tzinfo=UTC)) % HALF_HOUR
    rows = []
    for i in range(count):
        begin = start + i * HALF_HOUR
        value = 500 + begin.hour * 2 + begin.minute // 30
        rows.append(
            {
                "from": begin.strftime(TIME_FORMAT),
                "to": (begin + HALF_HOUR).strftime(TIME_FORMAT),
                "intensity": {"forecast": value, "actual": None, "index": "very high"},
            }
        )
    return rows


class CarbonIntensityHandler(BaseHTTPRequestHandler):
    """GET /intensity, /intensity/{from}/fw48h, /regional/intensity/{from}/fw48h/regionid/{id}
    and /regional/intensity/{from}/fw48h/postcode/{pc}, with the documented bodies."""

    server: UkApiServer

    def do_GET(self) -> None:
        self.server.record(self.path)
        parts = self.path.strip("/").split("/")
        body: object
        if parts == ["intensity"]:
            body = {"data": periods(NOW, 1)}
        elif parts[0] == "intensity" and len(parts) == 3 and parts[2] == "fw48h":
            body = {"data": periods(self._time(parts[1]), 96)}
        elif parts[:2] == ["regional", "intensity"] and len(parts) == 6 and parts[3] == "fw48h":
            region = {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London"}
            if parts[4] == "postcode":
                region = {"regionid": 12, "shortname": "South England", "postcode": parts[5]}
            body = {"data": {**region, "data": periods(self._time(parts[2]), 96)}}
        else:
            self._send(400, {"error": {"code": "400 Bad Request", "message": "Invalid path"}})
            return
        self._send(200, body)

    def _time(self, text: str) -> datetime:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)

    def _send(self, status: int, body: object) -> None:
        content = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        return


class UkApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), CarbonIntensityHandler)
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def record(self, path: str) -> None:
        with self._lock:
            self.paths.append(path)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> UkApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[UkApiServer]:
    running = UkApiServer().start()
    yield running
    if running._thread.is_alive():
        running.stop()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def no_sleep(_seconds: float) -> None:
    return None


def chain_for(port: int, clock: Clock) -> ProviderChain:
    settings = OperatorSettings(
        providers="ukci,trace",
        ukci_base_url=f"http://127.0.0.1:{port}",
        provider_retries=1,
        provider_timeout_seconds=5,
        provider_cache_ttl_seconds=300,
    )
    return build_provider(settings, clock=clock, sleep=no_sleep)


async def test_falls_back_to_the_trace_while_the_server_is_down(server: UkApiServer) -> None:
    clock = Clock()
    chain = chain_for(server.port, clock)
    window = (NOW, NOW + timedelta(hours=6))

    points = await chain.forecast("GB", *window)
    assert {p.source for p in points} == {"ukci"}
    assert all(p.intensity >= 500 for p in points)
    assert server.paths == ["/intensity/2024-03-14T11:00Z/fw48h"]
    assert (await chain.current("GB")).source == "ukci"

    port = server.port
    await asyncio.to_thread(server.stop)
    clock.now += timedelta(seconds=301)
    window = (clock.now, clock.now + timedelta(hours=6))
    points = await chain.forecast("GB", *window)
    assert {p.source for p in points} == {"trace"}
    assert all(p.intensity < 500 for p in points)
    assert not any(p.stale for p in points)
    status = chain.status()
    assert isinstance(status[0].last_error, ProviderUnavailableError)
    assert "ConnectError" in str(status[0].last_error)
    assert status[1].last_error is None
    assert (await chain.current("GB")).source == "trace"

    revived = UkApiServer(port).start()
    try:
        clock.now += timedelta(seconds=301)
        window = (clock.now, clock.now + timedelta(hours=6))
        points = await chain.forecast("GB", *window)
        assert {p.source for p in points} == {"ukci"}
        assert revived.paths == ["/intensity/2024-03-14T11:00Z/fw48h"]
        assert chain.status()[0].consecutive_failures == 0
    finally:
        await chain.aclose()
        await asyncio.to_thread(revived.stop)


async def test_concurrent_callers_share_one_request_per_region(server: UkApiServer) -> None:
    clock = Clock()
    chain = chain_for(server.port, clock)
    regions = ["GB", "GB-13", "GB-RG10"]
    try:
        results = await asyncio.gather(
            *(chain.forecast(regions[i % 3], NOW, NOW + timedelta(hours=24)) for i in range(1000))
        )
    finally:
        await chain.aclose()
    assert sorted(server.paths) == [
        "/intensity/2024-03-14T11:00Z/fw48h",
        "/regional/intensity/2024-03-14T11:00Z/fw48h/postcode/RG10",
        "/regional/intensity/2024-03-14T11:00Z/fw48h/regionid/13",
    ]
    assert all(len(points) == 49 for points in results)  # 11:00 today .. 11:00 tomorrow
    assert all({p.source for p in points} == {"ukci"} for points in results)
