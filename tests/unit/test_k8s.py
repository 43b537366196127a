"""The Kubernetes facade against a local HTTP server: concurrent calls share the pool's
connections instead of opening and discarding new ones."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from kubernetes import client

from carbonaware.k8s import Kube

POOL = 4
CALLS = 120


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many requests
    connections: ClassVar[set[tuple[str, int]]] = set()
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()  # headers and body go out in two writes: no waiting on Nagle
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        with self.lock:
            self.connections.add(self.client_address)
        name = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"kind": "Namespace", "metadata": {"name": name}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api_url() -> Iterator[str]:
    _Handler.connections = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_concurrent_calls_reuse_the_pools_connections(
    api_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    configuration = client.Configuration()
    configuration.host = api_url
    configuration.connection_pool_maxsize = POOL
    kube = Kube(client.ApiClient(configuration), threads=POOL, timeout_seconds=10)

    async def many() -> list[dict[str, object]]:
        calls = [kube._call("read", kube.core.read_namespace, f"ns-{i}") for i in range(CALLS)]
        return await asyncio.gather(*calls)

    try:
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            bodies = asyncio.run(many())
    finally:
        kube.close()
    assert [b["metadata"] for b in bodies] == [{"name": f"ns-{i}"} for i in range(CALLS)]
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert len(_Handler.connections) <= POOL
