"""BoaviztAPI client: a cloud instance's vCPUs, memory, embodied emissions and load curve.

Endpoints (BoaviztAPI v1, https://doc.api.boavizta.org/):

- ``GET /v1/cloud/instance?provider=&instance_type=&verbose=true&criteria=gwp&duration=H``:
  ``impacts.gwp.embedded.value`` is the instance's share of its platform's manufacturing
  emissions over ``H`` hours (kgCO2e); ``verbose`` gives ``vcpu``, ``memory`` and
  ``hours_life_time``. Asking for ``H = hours_life_time`` gives the instance's whole share,
  which is TE over its own vCPUs in M = TE x (TR/EL) x (RR/TR).
- ``POST /v1/cloud/instance`` with ``usage.time_workload`` at one load gives
  ``verbose.avg_power`` (W, the whole instance: CPU, memory and the rest) at that load; four
  loads (0, 10, 50, 100 %) make the curve.

- ``POST /v1/server/`` with ``configuration`` (CPU cores, RAM GiB) does the same for a server
  nobody published figures for (a ServerTarget's machine): whole-server embodied emissions
  over its ``hours_life_time`` and ``avg_power`` at each load.

An unknown type answers 404; a type BoaviztAPI matched only fuzzily (it says so in
``warnings``) is treated as unknown too, so a typo never borrows another type's figures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from carbonaware.errors import ProviderError, UnknownRegionError
from carbonaware.providers.http import ErrorResponse, HttpJsonClient, HttpOptions
from carbonaware.sci.boundary_spec import BoundarySpec
from carbonaware.sci.instances import CatalogKey, InstanceFigures

logger = logging.getLogger(__name__)

NAME = "boavizta"
LOAD_POINTS = (0.0, 0.10, 0.50, 1.00)
PROBE_HOURS = 8760.0


def _not_found(response: ErrorResponse) -> ProviderError | None:
    if response.status_code == 404:
        return UnknownRegionError(NAME, f"{response.request}: {response.message}", status_code=404)
    return None


def _number(node: Any, *path: str) -> float:
    for key in path:
        node = node[key]
    return float(node)


class BoaviztaClient:
    """Asks a BoaviztAPI server about cloud instance types."""

    def __init__(self, base_url: str, *, options: HttpOptions | None = None) -> None:
        self._http = HttpJsonClient(NAME, base_url, options=options, error_mapper=_not_found)

    async def __aenter__(self) -> BoaviztaClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def _impact(self, cloud: str, instance_type: str, hours: float) -> dict[str, Any]:
        params = {"provider": cloud, "instance_type": instance_type, "verbose": "true",
                  "criteria": "gwp", "duration": f"{hours:g}"}  # fmt: skip
        answer = await self._http.get_json("/v1/cloud/instance", params=params)
        if not isinstance(answer, dict):
            raise UnknownRegionError(NAME, f"{cloud}:{instance_type}: unexpected answer")
        if any("fuzzy" in str(w) for w in answer.get("warnings") or []):
            raise UnknownRegionError(NAME, f"{cloud}:{instance_type}: only a fuzzy match")
        return answer

    async def _power_at(self, cloud: str, instance_type: str, load: float) -> float:
        body = {"provider": cloud, "instance_type": instance_type,
                "usage": {"time_workload": [{"time_percentage": 100,
                                             "load_percentage": load * 100}]}}  # fmt: skip
        answer = await self._http.post_json(
            "/v1/cloud/instance",
            body,
            params={"verbose": "true", "criteria": "gwp", "duration": "1"},
        )
        return _number(answer, "verbose", "avg_power", "value")

    async def instance(self, cloud: str, instance_type: str) -> InstanceFigures | None:
        """The type's figures, or None when BoaviztAPI does not know it."""
        try:
            probe = await self._impact(cloud, instance_type, PROBE_HOURS)
            life = _number(probe, "verbose", "hours_life_time", "value")
            whole = await self._impact(cloud, instance_type, life)
            curve = tuple(
                [(load, await self._power_at(cloud, instance_type, load)) for load in LOAD_POINTS]
            )
        except UnknownRegionError as exc:
            logger.info("BoaviztAPI has no %s:%s (%s)", cloud, instance_type, exc.problem)
            return None
        except (KeyError, TypeError, ValueError) as exc:
            raise UnknownRegionError(NAME, f"{cloud}:{instance_type}: malformed answer") from exc
        vcpus = _number(whole, "verbose", "vcpu", "value")
        embodied = _number(whole, "impacts", "gwp", "embedded", "value")
        return InstanceFigures(
            name=instance_type,
            cloud=cloud,
            vcpus=vcpus,
            memory_gib=_number(whole, "verbose", "memory", "value"),
            # The instance's own share of its platform: TE shared over its own vCPUs.
            host_vcpus=vcpus,
            min_watts=curve[0][1] / vcpus,
            max_watts=curve[-1][1] / vcpus,
            embodied_kg=embodied,
            source=NAME,
            detail=f"BoaviztAPI {cloud}:{instance_type} (life {life:g} h)",
            lifespan_years=life / 8760.0,
            curve=curve,
            power_includes_memory=True,
        )

    async def server(self, vcpus: int, memory_gib: float) -> InstanceFigures:
        """A rack server with ``vcpus`` threads (two per core) and ``memory_gib`` of RAM."""
        cores = max(1, vcpus // 2)
        config: dict[str, Any] = {"cpu": {"units": 1, "core_units": cores}}
        if memory_gib > 0:
            config["ram"] = [{"units": 1, "capacity": memory_gib}]

        async def ask(hours: float, load: float) -> Any:
            body = {"model": {"type": "rack"}, "configuration": config,
                    "usage": {"time_workload": [{"time_percentage": 100,
                                                 "load_percentage": load * 100}]}}  # fmt: skip
            params = {"verbose": "true", "criteria": "gwp", "duration": f"{hours:g}"}
            return await self._http.post_json("/v1/server/", body, params=params)

        try:
            probe = await ask(PROBE_HOURS, 0.5)
            life = _number(probe, "verbose", "hours_life_time", "value")
            whole = await ask(life, 0.5)
            curve = tuple(
                [(load, _number(await ask(1.0, load), "verbose", "avg_power", "value"))
                 for load in LOAD_POINTS]
            )  # fmt: skip
            embodied = _number(whole, "impacts", "gwp", "embedded", "value")
        except (KeyError, TypeError, ValueError) as exc:
            raise UnknownRegionError(NAME, "server: malformed answer") from exc
        return InstanceFigures(
            name=f"server({cores} cores, {memory_gib:g} GiB)",
            cloud="",
            vcpus=float(vcpus),
            memory_gib=memory_gib,
            host_vcpus=float(vcpus),
            min_watts=curve[0][1] / vcpus,
            max_watts=curve[-1][1] / vcpus,
            embodied_kg=embodied,
            source=f"{NAME}-server",
            detail=f"BoaviztAPI rack server, {cores} cores, {memory_gib:g} GiB (life {life:g} h)",
            lifespan_years=life / 8760.0,
            curve=curve,
            power_includes_memory=True,
        )

    async def catalog(self, wanted: Iterable[CatalogKey]) -> dict[CatalogKey, InstanceFigures]:
        found: dict[CatalogKey, InstanceFigures] = {}
        for cloud, instance_type in sorted(set(wanted)):
            figures = await self.instance(cloud, instance_type)
            if figures is not None:
                found[(cloud, instance_type)] = figures
        return found


def fetch_catalog(base_url: str, boundary: BoundarySpec) -> dict[CatalogKey, InstanceFigures]:
    """BoaviztAPI's figures for every (cloud, instanceType) of ``boundary`` it knows.

    An unreachable server is a warning, not a failure: the tables answer instead, and the
    inputs table says which source each figure came from.
    """
    wanted = [(c.cloud or "aws", c.instance_type) for c in boundary.components if c.instance_type]

    async def run() -> dict[CatalogKey, InstanceFigures]:
        async with BoaviztaClient(base_url) as client:
            return await client.catalog(wanted)

    try:
        found = asyncio.run(run())
    except ProviderError as exc:
        logger.warning("BoaviztAPI at %s: %s; using the built-in tables", base_url, exc)
        return {}
    # The boundary keys its components by the cloud as written (possibly none).
    return {
        (c.cloud or "", c.instance_type): found[(c.cloud or "aws", c.instance_type)]
        for c in boundary.components
        if c.instance_type and (c.cloud or "aws", c.instance_type) in found
    }


class BoaviztaCatalog:
    """BoaviztAPI answers for the operator, remembered per (cloud, instance type).

    A type BoaviztAPI does not know is remembered as unknown; an unreachable server is not
    (the next run asks again) and the tables answer meanwhile.
    """

    def __init__(self, base_url: str, *, options: HttpOptions | None = None) -> None:
        self.base_url = base_url
        self._options = options
        self._known: dict[CatalogKey, InstanceFigures | None] = {}

    async def figures(self, cloud: str, instance_type: str) -> InstanceFigures | None:
        key = (cloud, instance_type)
        if key in self._known:
            return self._known[key]
        try:
            async with BoaviztaClient(self.base_url, options=self._options) as client:
                found = await client.instance(cloud, instance_type)
        except ProviderError as exc:
            logger.warning("BoaviztAPI at %s: %s; using the built-in tables", self.base_url, exc)
            return None
        self._known[key] = found
        return found

    async def server(self, vcpus: int, memory_gib: float) -> InstanceFigures | None:
        key = ("server", f"{vcpus}:{memory_gib:g}")
        if key in self._known:
            return self._known[key]
        try:
            async with BoaviztaClient(self.base_url, options=self._options) as client:
                found = await client.server(vcpus, memory_gib)
        except ProviderError as exc:
            logger.warning("BoaviztAPI at %s: %s; using the default server", self.base_url, exc)
            return None
        self._known[key] = found
        return found
