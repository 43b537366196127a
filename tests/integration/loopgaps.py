"""The operator's refresh loop as it really ran: the longest gap between two successful ticks.

Timing bounds in the fault tests come from this measurement rather than from the nominal
tick: on a loaded machine a tick takes its interval plus however long the refresh itself took,
and the operator plans with the gaps it sees (``scheduling.policy.decision_horizon``). The
gaps it measures between its decisions can differ from the gaps between completed ticks seen
here, so the largest horizon it reported (``carbonaware_decision_horizon_seconds``) is kept too.
"""

from __future__ import annotations

import threading
from types import TracebackType

from .operatorproc import scrape_metrics

LAST_SUCCESS = ("carbonaware_loop_last_success_timestamp_seconds", ())
STARTED = ("process_start_time_seconds", ())
HORIZON = ("carbonaware_decision_horizon_seconds", ())


class LoopGaps:
    """Samples ``carbonaware_loop_last_success_timestamp_seconds`` on each metrics port in a
    background thread and keeps the longest gap (wall seconds) between two successive
    successes of the same operator process (by its start time), and the largest decision
    horizon (operator seconds) any of them reported. A scrape that fails (the process is
    down, or too busy to answer in time) changes nothing: a gap spanning it is still
    measured. A restart starts over, so downtime is never counted as a gap: the tests account
    for it separately, and so is the time before a process's first tick."""

    def __init__(self, *ports: int, interval: float = 0.2) -> None:
        self.ports = ports
        self.interval = interval
        self.longest = 0.0
        self.horizon = 0.0
        self._last: dict[int, tuple[float, float] | None] = dict.fromkeys(ports)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-gaps", daemon=True)

    def __enter__(self) -> LoopGaps:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def last_tick(self, port: int) -> float | None:
        """When (wall epoch seconds) the last completed tick seen on ``port`` ended."""
        last = self._last.get(port)
        return last[1] if last is not None else None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for port in self.ports:
                self._sample(port)

    def _sample(self, port: int) -> None:
        try:
            samples = scrape_metrics(port, timeout=2)
        except OSError:
            return
        self.horizon = max(self.horizon, samples.get(HORIZON, 0.0))
        if not samples.get(LAST_SUCCESS) or STARTED not in samples:
            return  # not up, or no tick completed yet (the gauge is 0 until the first)
        current = (samples[STARTED], samples[LAST_SUCCESS])
        previous, self._last[port] = self._last[port], current
        if previous is not None and previous[0] == current[0] and current[1] > previous[1]:
            self.longest = max(self.longest, current[1] - previous[1])
