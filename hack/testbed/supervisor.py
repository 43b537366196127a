"""The plane's child processes: launched detached, logged, found again, stopped in order."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .client import PlaneClient
from .common import CLIENT_ENVIRONMENT, LocalPlaneError, log, poll
from .process import Component, exited, log_excerpt, process_start_ticks, rss_bytes


class Supervisor(PlaneClient):
    """Process bookkeeping shared by the control plane and the real node."""

    workdir: Path
    _components: dict[str, Component]
    _ports: dict[str, int]

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def _save_state(self) -> None:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        """PID of each component that is alive."""
        return {name: c.pid for name, c in self._components.items() if c.alive()}

    def is_running(self) -> bool:
        return any(c.alive() for c in self._components.values())

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each live component."""
        return {name: rss_bytes(pid) for name, pid in self.pids().items()}

    def log_path(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def _launch(self, name: str, argv: list[str]) -> Component:
        log = self.log_path(name)
        with log.open("ab") as log_file:
            log_file.write(f"\n==== {time.strftime('%F %T')} starting: {argv}\n".encode())
            log_file.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, **CLIENT_ENVIRONMENT},
                start_new_session=True,
            )
        ticks = process_start_ticks(process.pid) or 0
        component = Component(name, argv, log, process.pid, ticks, process)
        self._components[name] = component
        self._save_state()
        return component

    def _check_alive(self, names: Sequence[str]) -> None:
        for name in names:
            component = self._components[name]
            if not component.alive():
                raise LocalPlaneError(
                    f"{name} {component.exit_description()} while the plane was starting; "
                    f"see {component.log}\n{log_excerpt(component.log)}"
                )

    def _terminate(self, names: Sequence[str], grace: float) -> None:
        """SIGTERM, then SIGKILL whatever is still running after `grace` seconds."""
        live = [self._components[n] for n in names if n in self._components]
        live = [c for c in live if c.alive()]
        for component in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(component.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in live:
            while component.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if component.alive():
                # kube-apiserver waits up to 60 s for open watch connections to close.
                log(
                    f"{component.name} (pid {component.pid}) still running {grace:.0f} s "
                    "after SIGTERM; sending SIGKILL"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(component.pid, signal.SIGKILL)
            if component.process is not None:
                component.process.wait(timeout=10)
            else:
                poll(
                    functools.partial(exited, component),
                    timeout=10,
                    what=f"{component.name} (pid {component.pid}) to exit",
                    interval=0.05,
                )

    def _api_ready(self) -> bool | None:
        try:
            status, _ = self.api("GET", "/readyz", timeout=2)
        except (OSError, ssl.SSLError):
            return None
        return True if status == 200 else None

    @staticmethod
    def _https_healthy(port: int, path: str = "/healthz") -> bool | None:
        # The controller-manager and scheduler serve health with a self-signed cert.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=context, timeout=2
            ) as response:
                return True if response.status == 200 else None
        except (OSError, ssl.SSLError):
            return None

    def _etcd_healthy(self) -> bool | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self._ports['etcd-client']}/health", timeout=2
            ) as response:
                return True if json.loads(response.read()).get("health") == "true" else None
        except (OSError, ValueError):
            return None
