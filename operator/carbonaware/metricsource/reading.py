"""What every CPU reader returns: CPU core-seconds of one run and where they came from."""

from __future__ import annotations

from dataclasses import dataclass

# ``source`` values, so that status messages and the SCI method name the measurement.
SOURCE_PROMETHEUS_CONTAINER = "prometheus:container"
SOURCE_PROMETHEUS_NODE_SHARE = "prometheus:node-share"
SOURCE_METRICS_API = "metrics.k8s.io"
SOURCE_RUNNER = "runner"


@dataclass(frozen=True, slots=True)
class CpuReading:
    """CPU core-seconds a run used, the source that measured them, and a note on how."""

    core_seconds: float
    source: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.core_seconds < 0:
            raise ValueError(f"CPU time cannot be negative, got {self.core_seconds}")

    @classmethod
    def from_runner(cls, core_seconds: float) -> CpuReading:
        """CPU time an SSH runner measured on the remote host (its own ``/proc/stat`` summary)."""
        return cls(core_seconds, SOURCE_RUNNER, "remote host /proc/stat, reported by the runner")
