"""Whether this replica may run the refresh loop, following kopf's peering.

kopf pauses an operator's handlers while a live peer with a higher priority exists; the
refresh loop is ours, not kopf's, so it applies the same rule by reading the same peering
object once per tick. Where kopf would let two same-priority peers both run (with a
warning), the loop runs only in the peer with the smallest identity, so releases never
happen twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from carbonaware.errors import KubernetesError
from carbonaware.k8s import Kube

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeeringConfig:
    name: str
    identity: str
    priority: int
    namespace: str | None  # None: ClusterKopfPeering


def peer_is_alive(info: dict[str, Any], now: datetime) -> bool:
    lastseen = info.get("lastseen")
    if not isinstance(lastseen, str):
        return False
    try:
        lifetime = float(info.get("lifetime", 60))
        seen = datetime.fromisoformat(lastseen)
    except (TypeError, ValueError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen + timedelta(seconds=lifetime) > now


def should_act(config: PeeringConfig, peers: dict[str, dict[str, Any]], now: datetime) -> bool:
    """kopf's rule (a higher-priority live peer pauses us) plus a tie-break by identity."""
    for identity, info in peers.items():
        if identity == config.identity or not peer_is_alive(info, now):
            continue
        try:
            priority = int(info.get("priority", 0))
        except (TypeError, ValueError):
            continue
        if priority > config.priority:
            return False
        if priority == config.priority and identity < config.identity:
            return False
    return True


class PeeringGate:
    """``is_active()`` for the refresh loop; always True when running standalone."""

    def __init__(self, kube: Kube, config: PeeringConfig | None) -> None:
        self.kube = kube
        self.config = config
        self._active: bool | None = None

    async def is_active(self) -> bool:
        if self.config is None:
            return True
        try:
            peering = await self.kube.get_peering(self.config.name, self.config.namespace)
        except KubernetesError as exc:
            logger.warning(
                "cannot read peering %s: %s; pausing the refresh loop", self.config.name, exc
            )
            return False
        peers = (peering or {}).get("status") or {}
        active = should_act(self.config, peers, datetime.now(UTC))
        if active != self._active:
            logger.info(
                "refresh loop %s (peering %s)", "active" if active else "paused", self.config.name
            )
            self._active = active
        return active
