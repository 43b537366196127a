"""Parsing /proc/stat, /proc/meminfo and `times` output, and the host aggregate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonaware.runners.procstat import (
    CpuTimes,
    HostSample,
    SampleStreamParser,
    aggregate_samples,
    parse_cpu_line,
    parse_meminfo_line,
    parse_times_output,
)


def test_cpu_line_counts_everything_but_idle_and_iowait_as_busy() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    cpu = parse_cpu_line("cpu  100 5 50 800 20 3 2 10 40 1")

    assert cpu == CpuTimes(busy_ticks=100 + 5 + 50 + 3 + 2 + 10, total_ticks=990)


@pytest.mark.parametrize("line", ["cpu0 1 2 3 4 5", "intr 1 2 3", "cpu 1 2", "cpu a b c d e", ""])
def test_other_lines_are_not_cpu_totals(line: str) -> None:
    assert parse_cpu_line(line) is None


def test_meminfo_kib_become_bytes() -> None:
    assert parse_meminfo_line("MemTotal:       16303736 kB") == ("MemTotal", 16303736 * 1024)
    assert parse_meminfo_line("HugePages_Total:       0") == ("HugePages_Total", 0)
    assert parse_meminfo_line("garbage") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0m0.000000s 0m0.000000s\n0m1.040000s 0m0.020000s\n", 1.06),  # dash
        ("0m0.001s 0m0.000s\n0m1.050s 0m0.017s\n", 1.067),  # bash
        ("0m0.01s 0m0.00s 125m3.50s 1m0.25s", 125 * 60 + 3.5 + 60.25),  # long runs, one line
        ("0m0,00s 0m0,00s\n0m2,50s 0m0,50s", 3.0),  # a comma locale
    ],
)
def test_times_output_gives_children_user_plus_system(text: str, seconds: float) -> None:
    assert parse_times_output(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0m1.0s 0m2.0s", "nonsense"])
def test_times_output_that_is_incomplete_gives_none(text: str) -> None:
    assert parse_times_output(text) is None


SAMPLER_OUTPUT = """\
vcpus 4
cpu  100 0 100 800 0 0 0 0 0 0
MemTotal: 1000 kB
MemAvailable: 600 kB
sample-end
cpu  400 0 200 1400 0 0 0 0 0 0
MemTotal: 1000 kB
MemAvailable: 200 kB
sample-end
"""


def test_sample_stream_parser_reads_blocks() -> None:
    parser = SampleStreamParser()
    for line in SAMPLER_OUTPUT.splitlines():
        parser.feed_line(line)

    assert parser.vcpus == 4
    assert len(parser.samples) == 2
    assert parser.samples[1].memory_used_bytes == 800 * 1024


def test_aggregate_uses_first_and_last_cpu_readings_and_memory_extremes() -> None:
    parser = SampleStreamParser()
    for line in SAMPLER_OUTPUT.splitlines():
        parser.feed_line(line)

    aggregate = aggregate_samples(parser.samples)

    # busy 200 -> 600 of total 1000 -> 2000: 400 busy ticks in 1000.
    assert aggregate.host_utilisation == pytest.approx(0.4)
    assert aggregate.memory_used_bytes_max == 800 * 1024
    assert aggregate.memory_used_bytes_mean == 600 * 1024
    assert aggregate.memory_total_bytes == 1000 * 1024
    assert aggregate.samples == 2


def test_one_sample_gives_no_utilisation() -> None:
    sample = HostSample(CpuTimes(1, 2), memory_total_bytes=10, memory_available_bytes=4)

    aggregate = aggregate_samples([sample])

    assert aggregate.host_utilisation is None
    assert aggregate.memory_used_bytes_max == 6


def test_no_samples_gives_nothing() -> None:
    aggregate = aggregate_samples([])

    assert aggregate.samples == 0
    assert aggregate.host_utilisation is None
    assert aggregate.memory_used_bytes_mean is None


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(
            lambda pair: CpuTimes(busy_ticks=min(pair), total_ticks=max(pair))
        ),
        min_size=2,
        max_size=10,
    )
)
def test_utilisation_is_a_fraction(readings: list[CpuTimes]) -> None:
    samples = [HostSample(cpu, None, None) for cpu in readings]

    utilisation = aggregate_samples(samples).host_utilisation

    assert utilisation is None or 0.0 <= utilisation <= 1.0
