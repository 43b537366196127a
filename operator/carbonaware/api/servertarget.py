"""``ServerTarget`` (``carbonaware.io/v1alpha1``): a server outside the cluster reached over SSH.

Mirrors ``crds/servertarget.yaml``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Self

from pydantic import Field, field_validator, model_validator

from carbonaware.api.base import ApiModel
from carbonaware.api.conditions import Condition

KIND = "ServerTarget"
PLURAL = "servertargets"


class HostKeyPolicy(enum.StrEnum):
    STRICT = "Strict"
    ACCEPT_ANY = "AcceptAny"


class SecretKeyRef(ApiModel):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field("ssh-privatekey", min_length=1, max_length=253)


class Hardware(ApiModel):
    """Whole-machine figures for the SCI estimate of runs on this server."""

    vcpus: int = Field(ge=1, le=4096)
    min_watts: int | None = Field(None, ge=0, le=100_000)
    max_watts: int | None = Field(None, ge=0, le=100_000)
    tdp_watts: int | None = Field(None, ge=1, le=100_000)
    memory_gi_b: int | None = Field(None, alias="memoryGiB", ge=0, le=1_048_576)
    embodied_kg_c_o2e: int | None = Field(None, alias="embodiedKgCO2e", ge=0, le=1_000_000)
    lifespan_years: int = Field(4, ge=1, le=50)

    @model_validator(mode="after")
    def _one_power_model(self) -> Self:
        linear = self.min_watts is not None or self.max_watts is not None
        if linear and self.tdp_watts is not None:
            raise ValueError("set either minWatts/maxWatts or tdpWatts, not both")
        if (self.min_watts is None) != (self.max_watts is None):
            raise ValueError("minWatts and maxWatts must be set together")
        if (
            self.min_watts is not None
            and self.max_watts is not None
            and (self.min_watts > self.max_watts)
        ):
            raise ValueError("minWatts must not exceed maxWatts")
        return self


class ServerTargetSpec(ApiModel):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64, pattern=r"^[a-z_][a-z0-9_.-]*[$]?$")
    private_key_secret_ref: SecretKeyRef
    known_hosts: str | None = Field(None, min_length=1, max_length=65536)
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    region: str | None = Field(None, min_length=1, max_length=64)
    max_concurrent: int = Field(1, ge=1, le=1000)
    hardware: Hardware | None = None

    @field_validator("host")
    @classmethod
    def _host_is_one_name(cls, value: str) -> str:
        """No spaces, and nothing ssh could read as an option."""
        if " " in value or value.startswith("-"):
            raise ValueError("host must be a DNS name or an IP address (no spaces, no leading '-')")
        return value

    @model_validator(mode="after")
    def _known_hosts_required(self) -> Self:
        if self.host_key_policy is HostKeyPolicy.STRICT and self.known_hosts is None:
            raise ValueError("knownHosts must be set unless hostKeyPolicy is AcceptAny")
        return self


class ServerTargetStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    last_probe_time: datetime | None = None
    running: int = Field(0, ge=0)
    queued: int = Field(0, ge=0)
    observed_generation: int | None = None
