"""The Grafana dashboard queries only metrics the operator exports, by their exact names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from carbonaware.metrics import Metrics

from .helmchart import CHART

DASHBOARD = CHART / "dashboards" / "carbon-aware-operator.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# PromQL words that look like identifiers but are not metric names.
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and annotation queries."""
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers that are not functions or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = GRAFANA_VARIABLE.sub("", text)  # $__interval, ${datasource}, ...
    text = MATCHERS.sub("", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = GROUPING.sub("", text)  # grouping label lists
    names = re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", text)
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def label_names(expr: str) -> set[str]:
    """Label names an expression groups by or matches on."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = {
        label.strip()
        for _, group in GROUPING.findall(text)
        for label in group.split(",")
        if label.strip()
    }
    for matchers in MATCHERS.findall(text):
        labels |= {m.split("=")[0].strip(" !~") for m in matchers.split(",") if m.strip()}
    return labels


def exported() -> dict[str, set[str]]:
    """Sample names the operator exposes, with the label names of each."""
    metrics = Metrics()
    names: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.collect():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",),
            }[family.type]
            for suffix in suffixes:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def test_metric_name_extraction_finds_names_not_functions() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, policy) (rate(a_bucket{namespace=~"$namespace"}'
        "[$__rate_interval]))) / sum(b_total offset $__interval) or vector(0)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}
    assert label_names(expr) == {"le", "policy", "namespace"}


def test_dashboard_is_valid_json_with_a_fixed_uid() -> None:
    dashboard = load()
    assert dashboard["uid"] == "carbon-aware-operator"
    assert dashboard["title"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_datasource_is_a_variable_used_everywhere() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["query"] == "label_values(carbonaware_jobs, namespace)"
    assert namespace["datasource"] == DATASOURCE
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    annotations = [a for a in dashboard["annotations"]["list"] if "expr" in a]
    assert annotations
    for annotation in annotations:
        assert annotation["datasource"] == DATASOURCE


def test_every_query_uses_only_exported_metric_names_and_their_labels() -> None:
    names = exported()
    assert "carbonaware_releases_total" in names
    exprs = expressions(load())
    assert len(exprs) >= 15
    for expr in exprs:
        used = metric_names(expr)
        assert used, expr
        unknown = used - names.keys()
        assert not unknown, f"{expr}: not exported by carbonaware.metrics.Metrics: {unknown}"
        allowed = set().union(*(names[name] for name in used))
        assert label_names(expr) <= allowed, f"{expr}: labels not on {used}"


def test_every_exported_metric_has_a_panel() -> None:
    used = set().union(*(metric_names(expr) for expr in expressions(load())))
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported()}
    covered = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert families - covered == set(), "metrics without a dashboard panel"


@pytest.mark.parametrize("expr", expressions(load()))
def test_query_is_balanced_and_filters_namespaced_metrics(expr: str) -> None:
    for opening, closing in ("()", "[]", "{}"):
        assert expr.count(opening) == expr.count(closing), expr
    names = exported()
    for name in metric_names(expr):
        if "namespace" in names[name]:
            # Every selector of a namespaced metric honours the namespace variable.
            selectors = re.findall(rf"\b{name}\b(\{{[^}}]*\}})?", expr)
            assert all('namespace=~"$namespace"' in s for s in selectors), expr


def test_release_markers_are_an_annotation_on_releases() -> None:
    (releases,) = [a for a in load()["annotations"]["list"] if "expr" in a]
    assert "carbonaware_releases_total" in releases["expr"]
    assert releases["enable"] is True
