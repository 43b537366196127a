"""Label selectors with apimachinery's semantics, and the placement fields that use them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from carbonaware.api.carbonawarejob import CarbonAwareJobSpec, PlacementRegion
from carbonaware.api.selector import LabelSelector

POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
JOB = {"spec": {"template": {"spec": POD}}}


def selector(**fields: Any) -> LabelSelector:
    return LabelSelector.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "labels", "selected"),
    [
        ({}, {}, True),
        ({}, {"any": "thing"}, True),
        ({"matchLabels": {"tier": "batch"}}, {"tier": "batch", "x": "y"}, True),
        ({"matchLabels": {"tier": "batch"}}, {"tier": "web"}, False),
        ({"matchLabels": {"tier": "batch"}}, {}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
         {"zone": "b"}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]},
         {"zone": "a"}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": "x"}, False),
        ({"matchLabels": {"tier": "batch"},
          "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]},
         {"tier": "batch"}, True),
    ],
)  # fmt: skip
def test_a_selector_selects_as_kubernetes_does(
    fields: dict[str, Any], labels: dict[str, str], selected: bool
) -> None:
    assert selector(**fields).matches(labels) is selected


def test_the_selector_reads_like_kubectl_l() -> None:
    text = selector(
        matchLabels={"tier": "batch"},
        matchExpressions=[
            {"key": "zone", "operator": "In", "values": ["a", "b"]},
            {"key": "gpu", "operator": "DoesNotExist"},
        ],
    ).text()
    assert text == "tier=batch,zone in (a,b),!gpu"
    assert selector().text() == "(everything)"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"matchExpressions": [{"key": "z", "operator": "In"}]}, "values must be set"),
        ({"matchExpressions": [{"key": "z", "operator": "Exists", "values": ["a"]}]},
         "values must be left out"),
        ({"matchExpressions": [{"key": "z", "operator": "Near"}]}, "operator"),
        ({"matchLabels": {"bad key!": "x"}}, "not a valid label name"),
    ],
)  # fmt: skip
def test_a_bad_selector_is_refused_saying_what_to_change(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        selector(**fields)


ONE_TARGET = re.escape("exactly one of ssh.targetRef or ssh.targetSelector")


def spec(**fields: Any) -> CarbonAwareJobSpec:
    return CarbonAwareJobSpec.model_validate(fields)


def test_an_ssh_job_names_exactly_one_target_or_a_selector() -> None:
    chosen = spec(ssh={"targetSelector": {"matchLabels": {"pool": "a"}}, "command": "true"})
    assert chosen.ssh is not None
    assert chosen.ssh.target_ref is None
    with pytest.raises(ValidationError, match=ONE_TARGET):
        spec(ssh={"targetRef": {"name": "a"}, "targetSelector": {}, "command": "true"})
    with pytest.raises(ValidationError, match=ONE_TARGET):
        spec(ssh={"command": "true"})


def test_placement_is_for_jobs_and_names_each_region_once() -> None:
    placed = spec(jobTemplate=JOB, placement={"regions": [{"region": "DE"}, {"region": "PJM"}]})
    assert placed.placement is not None
    assert [r.region for r in placed.placement.regions] == ["DE", "PJM"]
    ssh = {"targetRef": {"name": "a"}, "command": "true"}
    with pytest.raises(ValidationError, match=re.escape("spec.placement must only be set with")):
        spec(ssh=ssh, placement={"regions": [{"region": "DE"}]})
    with pytest.raises(ValidationError, match="must not both be set"):
        spec(jobTemplate=JOB, region="GB", placement={"regions": [{"region": "DE"}]})
    with pytest.raises(ValidationError, match="each region once"):
        spec(jobTemplate=JOB, placement={"regions": [{"region": "DE"}, {"region": "DE"}]})
    with pytest.raises(ValidationError):
        spec(jobTemplate=JOB, placement={"regions": []})


def test_a_region_without_a_node_selector_means_the_well_known_region_label() -> None:
    assert PlacementRegion(region="DE").selector() == {"topology.kubernetes.io/region": "DE"}
    own = PlacementRegion.model_validate({"region": "DE", "nodeSelector": {"pool": "de-1"}})
    assert own.selector() == {"pool": "de-1"}
