"""Operator settings, read from the environment (prefix ``CARBONAWARE_``).

The Helm chart sets these as env vars; tokens come from Secrets through ``secretKeyRef``
and are held as :class:`pydantic.SecretStr`, so they never appear in a repr or a log line.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator can be told at start-up. Defaults suit the local demo."""

    model_config = SettingsConfigDict(env_prefix="CARBONAWARE_", extra="ignore")

    # --- scheduling loop
    tick_seconds: float = Field(60.0, gt=0, description="Seconds between forecast refreshes.")
    default_region: str = Field("GB", description="Region for jobs that name none.")
    forecast_blend: bool = Field(
        True,
        description="Plan on the provider's forecast blended with the operator's own forecaster"
        " by their recent skill at each lead time (the provider's alone until both are scored);"
        " false = the provider's corrected forecast alone.",
    )
    release_cap_per_tick: int | None = Field(
        None, ge=1, description="Most jobs released in one tick across the operator; None = no cap."
    )
    reconcile_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds between passes that check released work against the Jobs and runner"
        " pods that exist (one list call each), so a missed or dropped event costs at most this.",
    )
    liveness_ticks: int = Field(
        5,
        ge=2,
        description="The liveness probe fails once the refresh loop has not completed a tick for"
        " this many tick lengths, so a wedged operator is restarted.",
    )
    kube_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of every Kubernetes API call (connect and each read)."
    )

    # --- providers: an ordered chain, e.g. "ukci,trace"
    providers: str = Field("trace", description="Comma-separated provider chain, in order.")
    provider_cache_ttl_seconds: float = Field(300.0, gt=0)
    provider_stale_max_age_seconds: float = Field(3 * 3600.0, ge=0)
    provider_timeout_seconds: float = Field(10.0, gt=0)
    provider_retries: int = Field(2, ge=0)
    ukci_base_url: str = "https://api.carbonintensity.org.uk"
    electricitymaps_base_url: str = "https://api.electricitymap.org/v3"
    electricitymaps_token: SecretStr | None = None
    watttime_base_url: str = "https://api.watttime.org"
    watttime_username: str | None = None
    watttime_password: SecretStr | None = None
    static_intensity: float | None = Field(None, ge=0, description="Constant gCO2e/kWh.")
    static_table: str | None = Field(
        None,
        description="Hour-of-day table: 24 comma-separated gCO2e/kWh values (UTC), or "
        "per region 'GB=v0,...,v23;DE=380' (1 or 24 values each; '*' for any other region).",
    )
    trace_path: str | None = Field(None, description="CSV replayed by the trace provider.")
    trace_time_column: str = "Datetime (UTC)"
    trace_actual_column: str = "Actual Carbon Intensity (gCO2/kWh)"
    trace_forecast_column: str | None = "Forecast Carbon Intensity (gCO2/kWh)"
    trace_index_column: str | None = "Index"
    trace_vintages_path: str | None = Field(
        None,
        description="Forecasts as they were issued (CSV of issued_at,slot_start,value): the "
        "trace provider serves each period ahead from the latest issue out by then.",
    )
    trace_shift_to_now: bool = Field(
        True, description="Map the trace's year onto the present (same weekday and time)."
    )

    # --- SSH jobs
    ssh_mode: str = Field("Pod", pattern="^(Pod|InProcess)$")
    runner_image: str = "ghcr.io/carbon-aware-operator/carbon-aware-operator:0.1.0"
    runner_image_pull_policy: str = Field(
        "IfNotPresent", pattern="^(Always|IfNotPresent|Never)$", description="Of runner pods."
    )
    runner_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels runner pods must match (JSON object), e.g. to keep them on"
        " nodes that may reach the servers.",
    )
    runner_tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tolerations of runner pods (JSON list of Kubernetes Toleration objects).",
    )
    ssh_probe_seconds: float = Field(60.0, gt=0)
    ssh_allowed_hosts: str | None = Field(
        None,
        description="Comma-separated CIDRs and host-name patterns ServerTargets may point at"
        " (e.g. '10.20.0.0/16,*.build.example.com'); unset = any host.",
    )

    # --- measurement
    prometheus_url: str | None = None
    pue: float = Field(1.0, ge=1.0, description="PUE for on-premises servers and unknown clouds.")
    boavizta_url: str | None = Field(
        None,
        description="BoaviztAPI base URL (a separate server): instance figures from it first, "
        "the built-in tables as fallback. None = tables only.",
    )

    # --- endpoints
    metrics_port: int = Field(8080, ge=0, le=65535, description="Prometheus metrics; 0 = off.")
    metrics_address: str = Field("0.0.0.0", description="Address the metrics server binds.")
    health_port: int = Field(8081, ge=0, le=65535)
    namespace: str | None = Field(None, description="Watch one namespace; None = all.")
    webhook_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="HTTPS port of the mutating admission webhook through which"
        " CarbonAwarePolicies govern plain Jobs; 0 = no webhook (policies then govern nothing).",
    )
    webhook_address: str = Field("0.0.0.0", description="Address the webhook server binds.")
    webhook_cert_dir: Path | None = Field(
        None,
        description="Directory holding the webhook's serving certificate as a kubernetes.io/tls"
        " Secret mounts it: tls.crt, tls.key and ca.crt (the CA the webhook configuration"
        " trusts). Re-read when its files change, so a renewed certificate needs no restart.",
    )
    webhook_cert_check_seconds: float = Field(
        60.0, gt=0, description="How often the webhook's certificate files are checked for renewal."
    )
    webhook_policy_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long the webhook reuses a namespace's list of CarbonAwarePolicies.",
    )

    # --- high availability: kopf peering (`kopf run --peering NAME --priority N`)
    peering_name: str | None = Field(
        None,
        description="kopf peering object shared by the replicas (ClusterKopfPeering, or KopfPeering"
        " in `namespace`); None = standalone, for a single replica.",
    )
    peering_priority: int | None = Field(
        None,
        ge=0,
        description="kopf peering priority; None = a random one at start-up, so replicas of one"
        " Deployment differ: the highest works, the others stand by.",
    )

    # --- testing and demo aid: a faster clock
    time_scale: float = Field(
        1.0,
        gt=0,
        description="Testing/demo aid: operator time runs this many seconds per wall-clock second"
        " from `time_origin` (1.0 = real time). Every scheduling decision, the tick used in them,"
        " the provider cache and object creation times follow it, so hours of holding and"
        " releasing pass in minutes against a provider serving the same scaled time. Times the"
        " cluster records itself (Job and Pod start and completion) stay wall-clock. Never set"
        " it in production.",
    )
    time_origin: datetime | None = Field(
        None,
        description="Testing/demo aid: the instant at which operator time equals wall-clock time"
        " when `time_scale` is not 1 (default: the operator's start). Fix it to keep operator"
        " time continuous across restarts.",
    )

    @model_validator(mode="after")
    def _webhook_has_a_certificate(self) -> OperatorSettings:
        if self.webhook_port and self.webhook_cert_dir is None:
            raise ValueError(
                "CARBONAWARE_WEBHOOK_CERT_DIR must name the directory of the webhook's certificate"
                " (tls.crt, tls.key, ca.crt) when CARBONAWARE_WEBHOOK_PORT is set"
            )
        return self
