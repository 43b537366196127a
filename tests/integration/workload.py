"""How the integration suite is spread over its xdist workers (``--dist loadgroup``).

Tests that use the real worker node share one worker (one kubelet per machine), the CPU-heavy
modules share another, and every other module keeps its tests together so module fixtures
start once. Each worker takes the next group from one queue as it frees up, so the queue
starts with the longest groups (longest-first list scheduling): a long group left for the
end would otherwise run alone while the other workers sit idle. ``GROUP_SECONDS`` are
measured wall times per group (setup, call and teardown summed), printed at the end of every
run under "time by group"; a group missing from the table goes last.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

# Modules whose runs load the machine (SIGKILL loops, hundreds of objects); they share one
# xdist worker so at most one of them runs at a time beside the timing-sensitive tests.
CPU_HEAVY_MODULES = frozenset({"test_chaos", "test_chaos_ssh", "test_fuzz"})
# Modules that need spare CPU: test_sci_measurement checks that a burner raises the host's CPU
# time, which it cannot while the long groups keep both cores busy (it starved there in three
# of five runs once the RBAC group outlasted the CPU-heavy one). Their group has no entry in
# GROUP_SECONDS, so it is the last one handed out, when the long groups are ending.
SPARE_CPU_MODULES = frozenset({"test_sci_measurement"})

UNIT_PREFIX = "unit-"

GROUP_SECONDS: dict[str, float] = {
    "cpu-heavy": 780,
    "real-node": 900,
    "test_helm_rbac": 810,
    "test_provider_faults": 223,
    "test_interruptible": 140,
    "test_cronjobs": 150,
    "test_ssh_operator": 154,
    "test_operator_core": 144,
    "test_placement": 98,
    "test_hardening": 92,
    "test_overrides": 91,
    "test_ha": 90,
    "test_sci_usage_beyond_request": 80,
    "test_ssh_runner": 30,
    "test_ssh_exactly_once": 29,
    "test_ssh_command": 9,
    "test_refusals": 61,
    "test_policies": 80,
    "test_runtime_errors": 47,
    "test_bad_input": 45,
    "test_localplane": 42,
    "test_kubectl_plugin": 37,
    "test_metrics_prometheus": 34,
    "test_liveness": 24,
}


def xdist_group_of(item: pytest.Item) -> str:
    """The xdist group a test runs in. Unit tests (``make test`` runs them in the same session)
    keep one group per module, after every integration group: they fill the time workers
    would otherwise sit idle at the end."""
    if "integration" not in item.path.parts:
        return f"{UNIT_PREFIX}{item.path.stem}"
    if any("real_node" in name for name in getattr(item, "fixturenames", ())):
        return "real-node"
    module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
    if module in SPARE_CPU_MODULES:
        return "spare-cpu"
    return "cpu-heavy" if module in CPU_HEAVY_MODULES else module


def group_and_order(items: list[pytest.Item]) -> None:
    """Mark each test with its group and put the longest groups first (a stable sort: the
    tests of a group keep their order)."""
    groups = {item.nodeid: xdist_group_of(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    items.sort(key=lambda item: -GROUP_SECONDS.get(groups[item.nodeid], 0.0))


class GroupTimes:
    """Sums each group's reported durations (on the controller, from every worker)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _, marker, group = report.nodeid.rpartition("@")
        if group.startswith(UNIT_PREFIX):
            group = "unit tests (all modules)"
        self.seconds[group if marker else "(no group)"] += report.duration

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.seconds:
            return
        terminalreporter.write_sep("=", "time by group (longest first)")
        for group, seconds in sorted(self.seconds.items(), key=lambda pair: -pair[1]):
            terminalreporter.write_line(f"{seconds:8.1f} s  {group}")
