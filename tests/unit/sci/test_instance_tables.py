"""The packaged instance tables: generated from Cloud Carbon Footprint's data, complete, and
row for row what the source files say."""

from __future__ import annotations

import csv
import importlib.util
import random
import re
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

from carbonaware.sci.coefficients import (
    InstanceType,
    instance_table,
    lookup_instance_type,
    provider_coefficients,
)

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "hack" / "ccf" / "source"
SAMPLE = 50
SEED = 20260424  # fixed, so a failure names the same rows again


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ccf_tables", ROOT / "hack" / "ccf_tables.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def _rows(relative: str) -> list[dict[str, str]]:
    with (SOURCE / relative).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _use(cloud: str) -> dict[str, tuple[float, float]]:
    return {
        r["Architecture"]: (float(r["Min Watts"]), float(r["Max Watts"]))
        for r in _rows(f"output/coefficients-{cloud}-use.csv")
    }


def test_the_packaged_table_is_what_the_generator_makes_from_the_source() -> None:
    assert _generator().main(["--check"]) == 0


def test_every_row_is_complete() -> None:
    rows = instance_table()
    assert len({(r.provider, r.name) for r in rows}) == len(rows)
    for row in rows:
        assert row.provider in {"aws", "gcp", "azure"}, row
        assert row.name, row
        assert row.source, row
        assert 1 <= row.vcpus <= row.host_vcpus, row
        assert row.memory_gib > 0, row
        assert 0 < row.watts.min_watts < row.watts.max_watts, row
        assert row.embodied_kg > 0, row
        assert row.gpus >= 0, row


def test_coverage_per_cloud_is_what_the_docs_state() -> None:
    counts = {
        cloud: sum(r.provider == cloud for r in instance_table())
        for cloud in ("aws", "gcp", "azure")
    }
    assert counts["aws"] > 1000
    assert counts["azure"] > 350
    assert counts["gcp"] > 100
    docs = (ROOT / "docs" / "sci.md").read_text(encoding="utf-8")
    for cloud, label in (("aws", "AWS"), ("gcp", "GCP"), ("azure", "Azure")):
        assert f"| {label} | {counts[cloud]:,} |" in docs, (cloud, counts[cloud])


def test_the_types_of_the_published_case_study_are_known_with_ccf_hosts() -> None:
    for name in ("c5.4xlarge", "r5.2xlarge", "r5.4xlarge", "t3a.large", "t3a.xlarge", "m5.xlarge"):
        assert lookup_instance_type(name, "aws") is not None, name
    t3 = lookup_instance_type("t3.large", "aws")
    assert t3 is not None
    # CCF shares a t3's host over the family's largest size, t3.2xlarge (8 vCPUs).
    assert t3.host_vcpus == 8


def _sample(cloud: str) -> list[InstanceType]:
    rows = [r for r in instance_table() if r.provider == cloud]
    return random.Random(f"{SEED}-{cloud}").sample(rows, min(SAMPLE, len(rows)))


def _expected_watts(row: InstanceType, cloud: str) -> tuple[float, float]:
    table = _use(cloud)
    names = ["EPYC 2nd Gen" if n == "Graviton" else n for n in row.microarchitectures]
    known = [n for n in names if n in table]
    if not known:
        average = provider_coefficients()[cloud].watts
        return average.min_watts, average.max_watts
    pick = statistics.median if {"Sandy Bridge", "Ivy Bridge"} & set(known) else statistics.fmean
    return pick(table[n][0] for n in known), pick(table[n][1] for n in known)


def _check_watts(row: InstanceType, cloud: str) -> None:
    low, high = _expected_watts(row, cloud)
    assert row.watts.min_watts == pytest.approx(low, abs=5e-5), row
    assert row.watts.max_watts == pytest.approx(high, abs=5e-5), row


def _cpu_lists() -> dict[str, set[str]]:
    lists: dict[str, set[str]] = {}
    for path in (SOURCE / "data").glob("*.csv"):
        if path.name.startswith(("intel-", "amd-")):
            names = {line.split(",")[0].strip().lower() for line in path.read_text().splitlines()}
            lists[path.name] = names
    return lists


def _aws_microarchitecture_fits(
    cpu_name: str, row: InstanceType, lists: dict[str, set[str]]
) -> bool:
    if not row.microarchitectures:
        return True  # unknown: provider average, checked by the watts
    (arch,) = row.microarchitectures
    if arch.lower() in cpu_name.lower():
        return True
    if arch.startswith("EPYC"):
        epyc = re.search(r"EPYC\s+[79]\w?\d\w?(\d)", cpu_name)
        return epyc is not None and arch.startswith(f"EPYC {epyc.group(1)}")
    model = cpu_name.replace("Intel", "").replace("Xeon Platinum", "").replace("Xeon", "")
    model = model.replace("2nd Gen", "").strip().lower()
    return any(model in names or f"platinum {model}" in names for names in lists.values())


def test_fifty_random_aws_rows_match_their_source() -> None:
    computed = {r["Instance type"]: r for r in _rows("data/aws-instances.csv")}
    embodied = {r["type"]: float(r["total"]) for r in _rows("output/coefficients-aws-embodied.csv")}
    latest = {r["Instance Type"]: r for r in _rows("data/aws-instances-latest-2026.csv")}
    family_largest: dict[str, int] = {}
    for r in instance_table():
        if r.provider == "aws":
            family = r.name.split(".")[0]
            family_largest[family] = max(family_largest.get(family, 0), r.vcpus)
    lists = _cpu_lists()
    for row in _sample("aws"):
        if row.source == "output/coefficients-aws-embodied.csv":
            source = computed[row.name]
            vcpus, memory = source["Instance vCPU"], source["Instance Memory (in GB)"]
            assert row.embodied_kg == embodied[row.name], row
        else:
            assert row.source == "data/aws-instances-latest-2026.csv", row
            source = latest[row.name]
            vcpus, memory = source["vCPUs"], source["Memory (GiB)"]
            te = float(source["Platform Embedded Emissions (mtCo2eq)"])
            assert row.embodied_kg == pytest.approx(te * 1000), row
        assert row.vcpus == int(float(vcpus)), row
        assert row.memory_gib == float(memory.replace(",", ".")), row
        assert row.host_vcpus == family_largest[row.name.split(".")[0]], row
        assert _aws_microarchitecture_fits(source["Platform CPU Name"], row, lists), row
        _check_watts(row, "aws")


def test_fifty_random_gcp_rows_match_their_source() -> None:
    entries: dict[str, list[dict[str, str]]] = {}
    for r in _rows("data/gcp-instances.csv"):
        entries.setdefault(r["Machine type"], []).append(r)
    means = {
        r["type"]: float(r["total_mean"])
        for r in _rows("output/coefficients-gcp-embodied-mean.csv")
    }
    for row in _sample("gcp"):
        source = entries[row.name]
        assert row.vcpus == int(source[0]["Instance vCPUs"]), row
        assert row.memory_gib == float(source[0]["Instance Memory"]), row
        assert row.host_vcpus == int(source[0]["Platform vCPUs (highest vCPU possible)"]), row
        assert set(row.microarchitectures) == {e["Microarchitecture"] for e in source} - {"Unknown"}
        assert row.embodied_kg == means[row.name], row
        _check_watts(row, "gcp")


def test_fifty_random_azure_rows_match_their_source() -> None:
    entries: dict[str, list[dict[str, str]]] = {}
    for r in _rows("data/azure-instances.csv"):
        entries.setdefault(r["Virtual Machine"], []).append(r)
    totals: dict[str, float] = {}
    for r in _rows("output/coefficients-azure-embodied.csv"):
        totals.setdefault(r["type"], float(r["total"]))
    for row in _sample("azure"):
        source = entries[row.name][0]
        platform = int(source["Platform vCPUs (highest vCPU possible)"])
        share = float(source["Instance vCPUs"])
        assert row.vcpus == (round(share * platform) if share < 1 else int(share)), row
        assert row.memory_gib == float(source["Instance Memory"]), row
        assert row.host_vcpus == platform, row
        expected = {e["Microarchitecture"] for e in entries[row.name]} - {"Unknown"}
        assert set(row.microarchitectures) == expected, row
        assert row.embodied_kg == totals[row.name], row
        _check_watts(row, "azure")


def test_the_documented_per_vcpu_defaults_are_the_tables_medians() -> None:
    from carbonaware.sci.coefficients import embodied_kg_per_vcpu

    docs = (ROOT / "docs" / "sci.md").read_text(encoding="utf-8")
    for provider, label in (("aws", "AWS"), ("gcp", "GCP"), ("azure", "Azure"), (None, "unknown")):
        assert f"| {label} | {embodied_kg_per_vcpu(provider):.2f} kg |" in docs, label
