"""``carbonaware runner ssh``: the entry point of the runner pods the operator creates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carbonaware.cli.app import runner_app


@runner_app.command("ssh")
def runner_ssh_command(
    host: Annotated[str, typer.Option(help="Server DNS name or IP address.")],
    user: Annotated[str, typer.Option(help="Login name on the server.")],
    key_file: Annotated[
        Path,
        typer.Option(
            help="Private key file (the mounted Secret).", envvar="CARBONAWARE_SSH_KEY_FILE"
        ),
    ],
    port: Annotated[int, typer.Option(help="SSH port.")] = 22,
    known_hosts: Annotated[
        str | None,
        typer.Option(help="OpenSSH known_hosts lines.", envvar="CARBONAWARE_SSH_KNOWN_HOSTS"),
    ] = None,
    known_hosts_file: Annotated[
        Path | None, typer.Option(help="File with OpenSSH known_hosts lines.")
    ] = None,
    host_key_policy: Annotated[
        str, typer.Option(help="Strict (check against known_hosts) or AcceptAny.")
    ] = "Strict",
    working_dir: Annotated[
        str | None, typer.Option(help="Directory on the server to run in (default: home).")
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(help="Shell command line to run.", envvar="CARBONAWARE_SSH_COMMAND"),
    ] = None,
    script: Annotated[
        str | None, typer.Option(help="Script text to run.", envvar="CARBONAWARE_SSH_SCRIPT")
    ] = None,
    script_file: Annotated[Path | None, typer.Option(help="File holding the script.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="NAME=VALUE for the job; repeatable.")
    ] = None,
    env_json: Annotated[
        str | None,
        typer.Option(
            help='Job env as JSON [{"name":..,"value":..}] or {"NAME": "value"}.',
            envvar="CARBONAWARE_SSH_ENV",
        ),
    ] = None,
    timeout_seconds: Annotated[
        float | None, typer.Option(help="Stop the job after this long (0 or unset: no limit).")
    ] = None,
    connect_timeout_seconds: Annotated[float, typer.Option(help="Connect timeout.")] = 20.0,
    kill_grace_seconds: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL at the timeout.")
    ] = 10.0,
    sample_interval_seconds: Annotated[
        float, typer.Option(help="Seconds between /proc samples of the server.")
    ] = 2.0,
    termination_log: Annotated[
        Path | None,
        typer.Option(help="Where to write the JSON result (default: /dev/termination-log)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Name of the run on the server (letters, digits, '-'; at most 64). A runner "
            "given the id of an existing run attaches to it instead of starting the job again. "
            "Default: a random id."
        ),
    ] = None,
    reattach_seconds: Annotated[
        float, typer.Option(help="How long to keep re-attaching after a lost connection.")
    ] = 300.0,
    detach_on_signal: Annotated[
        bool,
        typer.Option(
            help="On SIGTERM/SIGINT, let go of the run instead of stopping it: it goes on on the "
            "server and a runner with the same --run-id attaches (exit 75). Runner pods use it."
        ),
    ] = False,
) -> None:
    """Run a job on a server over SSH, stream its output and exit with its exit code.

    Exit codes besides the job's own:

    124 timed out, 64 invalid options, 66 unreadable key or known_hosts file,

    69 unreachable, 70 run not completed, 71 run lost on the server,

    75 detached on a signal (the run goes on), 76 host key mismatch,

    77 authentication failed, 143 stopped on a signal (the run was stopped).
    """
    import os

    from carbonaware.runners.sshcommand import (
        SshRunnerOptions,
        configure_logging,
        default_termination_log,
        run_ssh_runner_command,
    )

    configure_logging()
    exit_code = run_ssh_runner_command(
        SshRunnerOptions(
            host=host,
            user=user,
            key_file=key_file,
            port=port,
            known_hosts=known_hosts,
            known_hosts_file=known_hosts_file,
            host_key_policy=host_key_policy,
            working_dir=working_dir,
            command=command,
            script=script,
            script_file=script_file,
            env=tuple(env or ()),
            env_json=env_json,
            timeout_seconds=timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
            kill_grace_seconds=kill_grace_seconds,
            sample_interval_seconds=sample_interval_seconds,
            termination_log=termination_log or default_termination_log(),
            run_id=run_id,
            reattach_seconds=reattach_seconds,
            detach_on_signal=detach_on_signal,
        ),
        environ=os.environ,
    )
    raise typer.Exit(code=exit_code)
