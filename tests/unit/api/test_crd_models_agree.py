"""The pydantic models and crds/*.yaml describe the same objects, field for field."""

from __future__ import annotations

import re
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from carbonaware.api.carbonawarejob import CarbonAwareJobSpec
from carbonaware.api.conditions import JobState
from carbonaware.api.cronjob import CarbonAwareCronJobSpec, CarbonAwareCronJobStatus
from carbonaware.api.jobstatus import CarbonAwareJobStatus
from carbonaware.api.policy import CarbonAwarePolicySpec
from carbonaware.api.servertarget import ServerTargetSpec, ServerTargetStatus

CRDS = Path(__file__).parents[3] / "crds"
CEL_MIN = re.compile(r"^self >= (-?\d+)$")
CEL_RANGE = re.compile(r"^self >= (-?\d+) && self <= (-?\d+)$")


def load_schema(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / name).read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip ``X | None``; return the inner type and whether None was allowed."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1, annotation
        return args[0], True
    return annotation, False


def bounds_from_field(info: FieldInfo) -> dict[str, int]:
    found: dict[str, int] = {}
    for meta in info.metadata:
        for attr, key in (
            ("ge", "minimum"),
            ("le", "maximum"),
            ("min_length", "minLength"),
            ("max_length", "maxLength"),
        ):
            value = getattr(meta, attr, None)
            if value is not None:
                found[key] = value
    return found


def bounds_from_schema(schema: dict[str, Any]) -> dict[str, int]:
    kind = schema.get("type")
    found: dict[str, int] = {}
    for key in ("minimum", "maximum", "minLength", "maxLength"):
        if key in schema:
            found[key] = schema[key]
    if kind == "array" and "maxItems" in schema:
        found["maxLength"] = schema["maxItems"]
    if kind == "array" and "minItems" in schema:
        found["minLength"] = schema["minItems"]
    if kind == "object" and "maxProperties" in schema:
        found["maxLength"] = schema["maxProperties"]
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"].strip()
        if match := CEL_RANGE.match(text):
            found["minimum"], found["maximum"] = int(match[1]), int(match[2])
        elif match := CEL_MIN.match(text):
            found["minimum"] = int(match[1])
    return found


def compare(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    props: dict[str, Any] = schema.get("properties", {})
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    if set(fields) != set(props):
        problems.append(
            f"{path}: model has {sorted(set(fields) - set(props))} extra, "
            f"CRD has {sorted(set(props) - set(fields))} extra"
        )
    required = set(schema.get("required", []))
    for alias, info in fields.items():
        if alias not in props:
            continue
        sub = props[alias]
        where = f"{path}.{alias}"
        inner, optional = unwrap(info.annotation)
        model_required = info.is_required()
        if model_required != (alias in required):
            problems.append(
                f"{where}: required in model={model_required}, in CRD={alias in required}"
            )
        if optional and "default" in sub:
            problems.append(f"{where}: optional in the model but defaulted in the CRD")
        user_facing = path.startswith("spec")
        defaulted = not model_required and not optional and sub.get("type") != "array"
        if user_facing and defaulted and "default" not in sub:
            problems.append(f"{where}: defaulted in the model but not in the CRD")
        if "default" in sub and info.default is not None and not callable(info.default_factory):
            default = info.default.value if hasattr(info.default, "value") else info.default
            if default != sub["default"]:
                problems.append(f"{where}: default {default!r} != CRD {sub['default']!r}")
        problems.extend(compare_type(inner, sub, where))
        if bounds_from_field(info) != bounds_from_schema(sub):
            problems.append(
                f"{where}: bounds {bounds_from_field(info)} != CRD {bounds_from_schema(sub)}"
            )
    return problems


def compare_type(annotation: Any, schema: dict[str, Any], where: str) -> list[str]:
    kind = schema.get("type")
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if kind != "object":
            return [f"{where}: model is an object, CRD says {kind}"]
        return compare(annotation, schema, where)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if kind != "array":
            return [f"{where}: model is a list, CRD says {kind}"]
        return compare_type(item, schema["items"], f"{where}[]")
    if origin is dict:
        _, value = typing.get_args(annotation)
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            return compare_type(value, schema["additionalProperties"], f"{where}{{}}")
        ok = kind == "object" and (
            schema.get("x-kubernetes-preserve-unknown-fields") or "properties" in schema
        )
        return [] if ok else [f"{where}: model is a free-form dict, CRD is not an open object"]
    if (
        isinstance(annotation, type)
        and issubclass(annotation, str)
        and hasattr(annotation, "__members__")
    ):
        values = sorted(member.value for member in annotation)  # type: ignore[attr-defined]
        if kind != "string" or sorted(schema.get("enum", [])) != values:
            return [f"{where}: enum {values} != CRD {schema.get('enum')}"]
        return []
    expected = {str: "string", int: "integer", float: "number", bool: "boolean", datetime: "string"}
    if expected.get(annotation) != kind:
        return [f"{where}: model type {annotation} but CRD type {kind}"]
    if annotation is datetime and schema.get("format") != "date-time":
        return [f"{where}: datetime field without format date-time in the CRD"]
    return []


@pytest.mark.parametrize(
    ("crd", "spec_model", "status_model"),
    [
        ("carbonawarejob.yaml", CarbonAwareJobSpec, CarbonAwareJobStatus),
        ("servertarget.yaml", ServerTargetSpec, ServerTargetStatus),
        ("carbonawarecronjob.yaml", CarbonAwareCronJobSpec, CarbonAwareCronJobStatus),
    ],
)
def test_models_match_crd(
    crd: str, spec_model: type[BaseModel], status_model: type[BaseModel]
) -> None:
    schema = load_schema(crd)
    problems = compare(spec_model, schema["properties"]["spec"], "spec")
    problems += compare(status_model, schema["properties"]["status"], "status")
    assert problems == []


def test_the_policy_model_matches_its_crd() -> None:
    schema = load_schema("carbonawarepolicy.yaml")
    assert compare(CarbonAwarePolicySpec, schema["properties"]["spec"], "spec") == []
    assert "status" not in schema["properties"]  # a policy has no status: Jobs carry the outcome


def test_comparison_notices_a_missing_field() -> None:
    """The checker itself must fail when the two drift apart."""
    schema = load_schema("servertarget.yaml")
    spec = schema["properties"]["spec"]
    del spec["properties"]["maxConcurrent"]
    assert any("maxConcurrent" in p for p in compare(ServerTargetSpec, spec, "spec"))


def test_comparison_notices_a_changed_default() -> None:
    schema = load_schema("carbonawarejob.yaml")
    schedule = schema["properties"]["spec"]["properties"]["schedule"]
    schedule["properties"]["expectedDurationSeconds"]["default"] = 60
    problems = compare(CarbonAwareJobSpec, schema["properties"]["spec"], "spec")
    assert any("expectedDurationSeconds" in p for p in problems)


def test_comparison_notices_a_map_value_type_change() -> None:
    schema = load_schema("carbonawarejob.yaml")
    template = schema["properties"]["spec"]["properties"]["jobTemplate"]
    template["properties"]["metadata"]["properties"]["labels"]["additionalProperties"] = {
        "type": "integer"
    }
    problems = compare(CarbonAwareJobSpec, schema["properties"]["spec"], "spec")
    assert any("jobTemplate.metadata.labels" in p for p in problems)


def test_the_state_column_allows_every_state_the_operator_writes() -> None:
    schema = load_schema("carbonawarejob.yaml")
    allowed = schema["properties"]["status"]["properties"]["state"]["enum"]
    assert sorted(allowed) == sorted(state.value for state in JobState)
