"""Command-line entry points: ``carbonaware run | forecast | simulate | sci | runner``."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="carbonaware",
    help="Carbon-aware batch scheduling for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    app()
