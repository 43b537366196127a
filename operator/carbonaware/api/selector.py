"""Label selectors (``matchLabels``, ``matchExpressions``) as Kubernetes defines them.

Used by ``spec.ssh.targetSelector`` to choose among the ServerTargets of a namespace. The
semantics are apimachinery's: every ``matchLabels`` pair and every expression must hold; an
empty selector matches everything.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Self

from pydantic import Field, field_validator, model_validator

from carbonaware.api.base import ApiModel

# Label names and values as Kubernetes allows them (apimachinery's validation).
LABEL_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def valid_labels(value: dict[str, str] | None, prefix: str = "") -> dict[str, str] | None:
    """``value`` if every pair is a label Kubernetes allows; else ValueError naming the first
    that is not (``prefix`` names the field)."""
    for key, text in (value or {}).items():
        if len(key) > 316 or not LABEL_NAME.match(key):
            raise ValueError(f"{prefix}label name {key!r} is not a valid label name")
        if len(text) > 63 or not LABEL_VALUE.match(text):
            raise ValueError(f"{prefix}label value {text!r} is not a valid label value")
    return value


class SelectorOperator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(ApiModel):
    key: str = Field(min_length=1, max_length=316)
    operator: SelectorOperator
    values: list[str] | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> Self:
        listed = bool(self.values)
        if self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN) and not listed:
            raise ValueError(f"values must be set for operator {self.operator.value}")
        if self.operator in (SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST) and listed:
            raise ValueError(f"values must be left out for operator {self.operator.value}")
        return self

    def holds_for(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is SelectorOperator.EXISTS:
            return present
        if self.operator is SelectorOperator.DOES_NOT_EXIST:
            return not present
        inside = present and labels[self.key] in (self.values or [])
        return inside if self.operator is SelectorOperator.IN else not inside


class LabelSelector(ApiModel):
    match_labels: dict[str, str] | None = Field(None, max_length=64)
    match_expressions: list[LabelSelectorRequirement] | None = Field(None, max_length=32)

    @field_validator("match_labels")
    @classmethod
    def _labels_as_kubernetes_allows(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return valid_labels(value)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with ``labels`` is selected (an empty selector selects all)."""
        found = labels or {}
        if any(found.get(key) != value for key, value in (self.match_labels or {}).items()):
            return False
        return all(rule.holds_for(found) for rule in self.match_expressions or [])

    def text(self) -> str:
        """The selector as ``kubectl get -l`` writes it (``tier=batch,gpu in (a100)``)."""
        parts = [f"{key}={value}" for key, value in sorted((self.match_labels or {}).items())]
        for rule in self.match_expressions or []:
            if rule.operator is SelectorOperator.EXISTS:
                parts.append(rule.key)
            elif rule.operator is SelectorOperator.DOES_NOT_EXIST:
                parts.append(f"!{rule.key}")
            else:
                word = "in" if rule.operator is SelectorOperator.IN else "notin"
                parts.append(f"{rule.key} {word} ({','.join(rule.values or [])})")
        return ",".join(parts) or "(everything)"
