"""Parsers for what the SSH runner reads on the server: ``/proc/stat``, ``/proc/meminfo`` and
the shell's ``times`` builtin, plus the aggregate kept in the run summary.

Pure functions over text, so they are tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# /proc/stat "cpu" line columns, see proc(5): user nice system idle iowait irq softirq steal
# guest guest_nice. guest and guest_nice are already counted in user and nice.
_CPU_COLUMNS_COUNTED = 8
_IDLE_COLUMN = 3
_IOWAIT_COLUMN = 4

_TIMES_VALUE = re.compile(r"(\d+)m\s*(\d+(?:[.,]\d+)?)s")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative host CPU time in clock ticks, from the aggregate ``cpu`` line."""

    busy_ticks: int
    total_ticks: int


@dataclass(frozen=True)
class HostSample:
    """One reading of the server: CPU counters and memory, either may be missing."""

    cpu: CpuTimes | None
    memory_total_bytes: int | None
    memory_available_bytes: int | None

    @property
    def memory_used_bytes(self) -> int | None:
        if self.memory_total_bytes is None or self.memory_available_bytes is None:
            return None
        return max(0, self.memory_total_bytes - self.memory_available_bytes)


@dataclass(frozen=True)
class HostAggregate:
    """What the summary keeps of the samples taken during a run."""

    samples: int
    host_utilisation: float | None
    memory_used_bytes_mean: int | None
    memory_used_bytes_max: int | None
    memory_total_bytes: int | None


def parse_cpu_line(line: str) -> CpuTimes | None:
    """Parse the aggregate ``cpu`` line of ``/proc/stat``; None if it is not one."""
    fields = line.split()
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    try:
        values = [int(value) for value in fields[1 : 1 + _CPU_COLUMNS_COUNTED]]
    except ValueError:
        return None
    if any(value < 0 for value in values):
        return None
    total = sum(values)
    idle = values[_IDLE_COLUMN] + (values[_IOWAIT_COLUMN] if len(values) > _IOWAIT_COLUMN else 0)
    # Busy share as top(1) and mpstat(1) compute it: everything but idle and iowait.
    return CpuTimes(busy_ticks=total - idle, total_ticks=total)


def parse_meminfo_line(line: str) -> tuple[str, int] | None:
    """Parse ``MemTotal: 123 kB`` into ``("MemTotal", 125952)`` (bytes); None otherwise."""
    fields = line.split()
    if len(fields) < 2 or not fields[0].endswith(":"):
        return None
    try:
        value = int(fields[1])
    except ValueError:
        return None
    if value < 0:
        return None
    unit = fields[2].lower() if len(fields) > 2 else ""
    # /proc/meminfo says "kB" but means KiB (proc(5)).
    multiplier = 1024 if unit == "kb" else 1
    return fields[0][:-1], value * multiplier


def parse_times_output(text: str) -> float | None:
    """CPU seconds of a shell's waited-for children, from its ``times`` builtin output.

    ``times`` prints two lines, ``<self user> <self sys>`` then ``<children user>
    <children sys>``, each as ``XmY.YYs`` (dash, bash, busybox). Returns children user + sys.
    """
    values = _TIMES_VALUE.findall(text)
    if len(values) != 4:
        return None
    seconds = [int(minutes) * 60 + float(rest.replace(",", ".")) for minutes, rest in values]
    return seconds[2] + seconds[3]


class SampleStreamParser:
    """Turns the sampler's output (see :mod:`carbonaware.runners.sshscript`) into samples.

    The stream is ``vcpus N`` once, then blocks of a ``cpu ...`` line and ``MemTotal:`` /
    ``MemAvailable:`` lines, each block closed by ``sample-end``.
    """

    def __init__(self) -> None:
        self.vcpus: int | None = None
        self.samples: list[HostSample] = []
        self._cpu: CpuTimes | None = None
        self._memory: dict[str, int] = {}

    def discard_partial(self) -> None:
        """Forget a block that was cut off (the stream was stopped mid-sample)."""
        self._cpu = None
        self._memory = {}

    def feed_line(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("vcpus "):
            try:
                count = int(stripped.split()[1])
            except (IndexError, ValueError):
                return
            if count > 0:
                self.vcpus = count
            return
        if stripped == "sample-end":
            if self._cpu is not None or self._memory:
                self.samples.append(
                    HostSample(
                        cpu=self._cpu,
                        memory_total_bytes=self._memory.get("MemTotal"),
                        memory_available_bytes=self._memory.get("MemAvailable"),
                    )
                )
            self._cpu = None
            self._memory = {}
            return
        cpu = parse_cpu_line(stripped)
        if cpu is not None:
            self._cpu = cpu
            return
        memory = parse_meminfo_line(stripped)
        if memory is not None:
            self._memory[memory[0]] = memory[1]


def aggregate_samples(samples: Sequence[HostSample]) -> HostAggregate:
    """Mean host busy fraction over the run (first to last CPU reading) and memory use."""
    cpu_readings = [sample.cpu for sample in samples if sample.cpu is not None]
    utilisation: float | None = None
    if len(cpu_readings) >= 2:
        first, last = cpu_readings[0], cpu_readings[-1]
        total_delta = last.total_ticks - first.total_ticks
        busy_delta = last.busy_ticks - first.busy_ticks
        if total_delta > 0 and busy_delta >= 0:
            utilisation = min(1.0, busy_delta / total_delta)
    used = [value for value in (s.memory_used_bytes for s in samples) if value is not None]
    totals = [s.memory_total_bytes for s in samples if s.memory_total_bytes is not None]
    return HostAggregate(
        samples=len(samples),
        host_utilisation=utilisation,
        memory_used_bytes_mean=round(sum(used) / len(used)) if used else None,
        memory_used_bytes_max=max(used) if used else None,
        memory_total_bytes=max(totals) if totals else None,
    )
