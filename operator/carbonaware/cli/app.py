"""The ``carbonaware`` command and its ``runner`` group; the modules beside this one add the
commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="carbonaware",
    help="Carbon-aware batch scheduling for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runner_app = typer.Typer(
    name="runner",
    help="Entry points of the runner pods the operator creates.",
    no_args_is_help=True,
)
app.add_typer(runner_app, name="runner")


@app.callback()
def _commands() -> None:
    """Carbon-aware batch scheduling for Kubernetes."""
