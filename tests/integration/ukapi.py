"""A real HTTP server on loopback that speaks the UK Carbon Intensity API.

The public API is unreachable from tests; this serves its documented shapes with values the
test controls: ``server.intensity`` maps a period start to gCO2e/kWh, and ``server.mode``
makes it fail (``"down"`` answers 503, ``"garbage"`` sends broken JSON, ``"slow"`` waits
``server.delay`` seconds first, ``"stale"`` serves periods from a day ago).

Regional endpoints (``/regional/regionid/13``, ``/regional/postcode/RG10`` and their
``/regional/intensity/{from}/fw48h/...`` forecasts) answer too: ``server.regional`` maps an
operator region key (``GB-13``, ``GB-RG10``) to its own intensity function; regions not in
it follow ``server.intensity``.

Faults over time: ``server.clock`` is the server's "now" (the wall clock, or the operator's
scaled clock, see ``CARBONAWARE_TIME_SCALE``), ``server.schedule`` maps it to a mode (phases
of failures; it overrides ``server.mode``), ``"error"`` answers 500, ``server.stale_by`` sets
how old ``"stale"`` periods are, and ``server.served`` counts answers by mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HALF_HOUR = timedelta(minutes=30)
TIME_FORMAT = "%Y-%m-%dT%H:%MZ"

IntensityFn = Callable[[datetime], float]


REGION_KINDS = ("regionid", "postcode")


def region_key(value: str) -> str:
    """The operator's region key for a regional path's last part: ``13`` -> ``GB-13``."""
    return f"GB-{value.upper()}"


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
        self.regional: dict[str, IntensityFn] = {}
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[str] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.schedule: Callable[[datetime], str] | None = None
        self.stale_by = timedelta(days=1)
        # As the real API: national periods that ended carry their actual. Off by default, so
        # that tests which count on forecasts alone keep them.
        self.actuals = False
        self.served: Counter[str] = Counter()
        self._lock = threading.Lock()

    def current_mode(self) -> str:
        """``schedule(clock())`` when a schedule is set, else ``mode``."""
        return self.schedule(self.clock()) if self.schedule is not None else self.mode

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def periods(
        self, first: datetime, count: int, region: str | None = None
    ) -> list[dict[str, Any]]:
        """National rows (``region`` None) or a region's rows, which carry no ``actual``."""
        start = period_start(first)
        if self.current_mode() == "stale":
            start -= self.stale_by
        intensity = self.intensity if region is None else self.regional.get(region, self.intensity)
        rows = []
        for i in range(count):
            begin = start + i * HALF_HOUR
            value = round(intensity(begin))
            values: dict[str, Any] = {"forecast": value, "index": band(value)}
            if region is None:
                ended = self.actuals and begin + HALF_HOUR <= self.clock()
                values["actual"] = value if ended else None
            rows.append(
                {
                    "from": begin.strftime(TIME_FORMAT),
                    "to": (begin + HALF_HOUR).strftime(TIME_FORMAT),
                    "intensity": values,
                }
            )
        return rows

    def region_entry(self, kind: str, value: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """One region of a regional answer (``kind`` is ``regionid`` or ``postcode``)."""
        entry: dict[str, Any] = {"regionid": int(value) if kind == "regionid" else 0}
        if kind == "postcode":
            entry["postcode"] = value
        entry["shortname"] = f"{kind} {value}"
        entry["data"] = rows
        return entry


class _Handler(BaseHTTPRequestHandler):
    server: UkApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``server.requests`` instead."""

    def do_GET(self) -> None:
        server = self.server
        server.record(self.path)
        mode = server.current_mode()
        with server._lock:
            server.served[mode] += 1
        if mode == "down":
            self._send(503, b'{"error": {"code": "503", "message": "Service Unavailable"}}')
            return
        if mode == "error":
            self._send(500, b'{"error": {"code": "500", "message": "Internal Server Error"}}')
            return
        if mode == "slow":
            time.sleep(server.delay)
        if mode == "garbage":
            self._send(200, b'{"data": [{"from": "2024-')
            return
        parts = self.path.strip("/").split("/")
        if parts == ["intensity"]:
            body = {"data": server.periods(server.clock(), 1)}
        elif len(parts) == 3 and parts[0] == "intensity":
            first = datetime.strptime(parts[1], TIME_FORMAT).replace(tzinfo=UTC)
            if parts[2] == "fw48h":
                count = 96
            else:
                end = datetime.strptime(parts[2], TIME_FORMAT).replace(tzinfo=UTC)
                count = max(1, int((end - first) / HALF_HOUR) + 1)
            body = {"data": server.periods(first, count)}
        elif len(parts) == 3 and parts[0] == "regional" and parts[1] in REGION_KINDS:
            # /regional/{regionid|postcode}/{value}: the current period, data is a list
            rows = server.periods(server.clock(), 1, region_key(parts[2]))
            body = {"data": [server.region_entry(parts[1], parts[2], rows)]}
        elif (
            len(parts) == 6 and parts[:2] == ["regional", "intensity"] and parts[4] in REGION_KINDS
        ):
            # /regional/intensity/{from}/{fw48h|to}/{regionid|postcode}/{value}: data is one object
            first = datetime.strptime(parts[2], TIME_FORMAT).replace(tzinfo=UTC)
            if parts[3] == "fw48h":
                count = 96
            else:
                end = datetime.strptime(parts[3], TIME_FORMAT).replace(tzinfo=UTC)
                count = max(1, int((end - first) / HALF_HOUR) + 1)
            rows = server.periods(first, count, region_key(parts[5]))
            body = {"data": server.region_entry(parts[4], parts[5], rows)}
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
