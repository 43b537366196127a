"""Test doubles for the providers: a scripted upstream, a recorded sleep, a settable clock."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from carbonaware.providers.http import HttpOptions

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    """A response body from fixtures/, in the shape the upstream documents."""
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Reply:
    """One scripted answer: a JSON body (or raw bytes), a status, headers, or an exception."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: Exception | None = None

    def response(self, request: httpx.Request) -> httpx.Response:
        if self.error is not None:
            raise self.error
        content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        return httpx.Response(self.status, content=content, headers=headers, request=request)


Route = Reply | Callable[[httpx.Request], httpx.Response]


class FakeUpstream:
    """An httpx.MockTransport that answers by URL path and records every request.

    Each path has a queue of replies; the last one repeats. Unknown paths get a 404.
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[Route]] = {}
        self.requests: list[httpx.Request] = []

    def route(self, path: str, *replies: Route) -> FakeUpstream:
        self.routes[path] = list(replies)
        return self

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get(request.url.path)
        if not queue:
            return httpx.Response(404, json={"message": "no such route"}, request=request)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Reply):
            return reply.response(request)
        return reply(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    @property
    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


class Sleeps:
    """An injected ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeClock:
    """A settable UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def options(
    upstream: FakeUpstream,
    *,
    clock: FakeClock | None = None,
    sleeps: Sleeps | None = None,
    retries: int = 2,
    outcomes: list[tuple[str, str]] | None = None,
) -> HttpOptions:
    """HttpOptions wired to the fakes: no real waiting, fixed jitter."""
    hook = None
    if outcomes is not None:
        recorded = outcomes

        def hook(name: str, outcome: str) -> None:
            recorded.append((name, outcome))

    base = HttpOptions(
        retries=retries,
        transport=upstream.transport,
        sleep=sleeps or Sleeps(),
        jitter=lambda: 0.5,
        on_request=hook,
    )
    return dataclasses.replace(base, now=clock) if clock is not None else base
