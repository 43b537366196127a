"""Command-line entry points: ``carbonaware run | sci | forecast | simulate | runner``."""

from __future__ import annotations

# isort: off
# Each module registers its commands on ``app``; ``--help`` lists them in this order.
from carbonaware.cli import operate, forecast, simulate, runner  # noqa: F401

# isort: on
from carbonaware.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
