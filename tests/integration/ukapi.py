"""A real HTTP server on loopback that speaks the UK Carbon Intensity API (national).

The public API is unreachable from tests; this serves its documented shapes with values the
test controls: ``server.intensity`` maps a period start to gCO2e/kWh, and ``server.mode``
makes it fail (``"down"`` answers 503, ``"garbage"`` sends broken JSON, ``"slow"`` waits
``server.delay`` seconds first, ``"stale"`` serves periods from a day ago).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HALF_HOUR = timedelta(minutes=30)
TIME_FORMAT = "%Y-%m-%dT%H:%MZ"

IntensityFn = Callable[[datetime], float]


def period_start(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 30, second=0, microsecond=0)


def band(value: float) -> str:
    """The API's own index bands (2024 boundaries) so served data looks like the real thing."""
    for limit, name in ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high")):
        if value < limit:
            return name
    return "very high"


class UkApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, intensity: IntensityFn) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.intensity = intensity
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def periods(self, first: datetime, count: int) -> list[dict[str, Any]]:
        start = period_start(first)
        if self.mode == "stale":
            start -= timedelta(days=1)
        rows = []
        for i in range(count):
            begin = start + i * HALF_HOUR
            value = round(self.intensity(begin))
            rows.append(
                {
                    "from": begin.strftime(TIME_FORMAT),
                    "to": (begin + HALF_HOUR).strftime(TIME_FORMAT),
                    "intensity": {"forecast": value, "actual": None, "index": band(value)},
                }
            )
        return rows


class _Handler(BaseHTTPRequestHandler):
    server: UkApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``server.requests`` instead."""

    def do_GET(self) -> None:
        server = self.server
        server.record(self.path)
        if server.mode == "down":
            self._send(503, b'{"error": {"code": "503", "message": "Service Unavailable"}}')
            return
        if server.mode == "slow":
            time.sleep(server.delay)
        if server.mode == "garbage":
            self._send(200, b'{"data": [{"from": "2024-')
            return
        parts = self.path.strip("/").split("/")
        if parts == ["intensity"]:
            body = {"data": server.periods(datetime.now(UTC), 1)}
        elif len(parts) == 3 and parts[0] == "intensity":
            first = datetime.strptime(parts[1], TIME_FORMAT).replace(tzinfo=UTC)
            if parts[2] == "fw48h":
                count = 96
            else:
                end = datetime.strptime(parts[2], TIME_FORMAT).replace(tzinfo=UTC)
                count = max(1, int((end - first) / HALF_HOUR) + 1)
            body = {"data": server.periods(first, count)}
        else:
            self._send(400, b'{"error": {"code": "400 Bad Request", "message": "Invalid path"}}')
            return
        self._send(200, json.dumps(body).encode())

    def _send(self, status: int, content: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


@contextmanager
def serve_uk_api(intensity: IntensityFn) -> Iterator[UkApiServer]:
    server = UkApiServer(intensity)
    thread = threading.Thread(target=server.serve_forever, name="uk-api", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
