"""The test bed's listening ports: free, distinct and never from the ephemeral range, which
any outgoing connection of a parallel test may take between the check and the bind."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

HACK = Path(__file__).resolve().parents[3] / "hack"
if str(HACK) not in sys.path:
    sys.path.insert(0, str(HACK))
from testbed import process  # noqa: E402


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ephemeral_low = int(process.EPHEMERAL_RANGE.read_text().split()[0])
    high = min(ephemeral_low, process.LISTEN_PORTS_HIGH)
    ports = process.free_ports(50)
    assert len(set(ports)) == 50
    assert all(process.LISTEN_PORTS_LOW <= port < high for port in ports)
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_given(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = process.free_ports(2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        monkeypatch.setattr(process, "_listen_range", lambda: [first, second])
        assert process.free_ports(1) == [second]
        monkeypatch.setattr(process, "_listen_range", lambda: [first])
        with pytest.raises(OSError, match="no 1 free loopback ports"):
            process.free_ports(1)
