"""The demo's jobs: the examples as applied (thresholds set from the grid now, one job on
the real node, the SSH jobs pointed at the local server) and the grid outlook they use."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from demokit.common import EXAMPLES, REGION, SERVER_TARGET_FILE, hhmm

# --------------------------------------------------------------------------- manifests


def load_manifest(path: Path) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def job_manifest(name: str) -> dict[str, Any]:
    return load_manifest(EXAMPLES / "jobs" / f"{name}.yaml")


def server_objects(server: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Secret with the client key and the ServerTarget pointing at the local sshd."""
    target = load_manifest(SERVER_TARGET_FILE)
    ref = target["spec"]["privateKeySecretRef"]
    target["spec"].update(
        host=server.host, port=server.port, user=server.user, knownHosts=server.known_hosts
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ref["name"], "labels": {"app.kubernetes.io/part-of": "carbon-demo"}},
        "type": "kubernetes.io/ssh-auth",
        "stringData": {ref.get("key", "ssh-privatekey"): server.client_private_key},
    }
    return secret, target


def on_real_node(plane: Any, manifest: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The job's pod on the real node: the busybox image keeping one core busy for `seconds`,
    so its SCI comes from a real container's CPU (metrics-server) rather than a kwok pod."""
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod.update(plane.real_node_placement())
    (container,) = pod["containers"]
    container.update(
        image=plane.images.busybox.name,
        imagePullPolicy="Never",
        command=["sh", "-c", f"echo building the report; timeout {seconds} sh -c "
                 "'while :; do :; done'; echo done"],
    )  # fmt: skip
    return manifest


def ssh_job(name: str, data_dir: Path) -> dict[str, Any]:
    """An SSH example with DATA_DIR pointing into the demo's work directory."""
    manifest = job_manifest(name)
    for item in manifest["spec"]["ssh"].get("env", []):
        if item["name"] == "DATA_DIR":
            item["value"] = str(data_dir)
    return manifest


# --------------------------------------------------------------------------- the grid


class GridOutlook:
    """What the replayed trace says now and over the next 24 hours (as the operator sees it)."""

    def __init__(self, current: float, points: list[tuple[datetime, float]], is_actual: bool):
        self.current = current
        self.points = points
        self.current_is_actual = is_actual

    @property
    def minimum(self) -> tuple[datetime, float]:
        return min(self.points, key=lambda point: point[1])

    def first_at_or_below(self, value: float) -> datetime | None:
        return next((start for start, v in self.points if v <= value), None)


def grid_outlook(settings: Any) -> GridOutlook:
    import asyncio

    from carbonaware.providers.base import utc_now
    from carbonaware.providers.factory import build_provider

    async def read() -> GridOutlook:
        chain = build_provider(settings)
        try:
            now = utc_now()
            current = await chain.current(REGION)
            forecast = await chain.forecast(REGION, now, now + timedelta(hours=24))
        finally:
            await chain.aclose()
        points = [(point.start, float(point.intensity)) for point in forecast]
        return GridOutlook(float(current.intensity), points, not current.is_forecast)

    return asyncio.run(read())


def thresholds(outlook: GridOutlook) -> tuple[int, int, str, str]:
    """maxIntensity for the job that is met now and for the one that waits, with why."""
    now_value = outlook.current
    met = int(math.ceil((now_value + 10) / 10) * 10)
    low_start, low_value = outlook.minimum
    if low_value < now_value - 10:
        # Between the lowest forecast and now: held until the forecast first reaches it.
        waiting = int((low_value + 0.4 * (now_value - low_value)) // 5 * 5)
        waiting = max(min(waiting, int(now_value) - 5), 0)
        first = outlook.first_at_or_below(waiting)
        when = f"forecast to reach it at {hhmm(first)}" if first else "not in the forecast"
        why = f"{waiting} g < {now_value:.0f} g now: held; {when}"
    else:
        # The grid is about as clean now as it will be today: this one waits all day.
        waiting = max(int(low_value * 0.6) // 5 * 5, 0)
        why = (
            f"{waiting} g is below the whole 24 h forecast (lowest {low_value:.0f} g at "
            f"{hhmm(low_start)}): held until its latest start"
        )
    return met, waiting, f"{met} g >= {now_value:.0f} g now: released at once", why
