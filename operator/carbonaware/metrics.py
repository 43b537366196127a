"""Prometheus collectors: the only module that imports prometheus_client.

Names follow Prometheus conventions: prefix ``carbonaware_``, base units (seconds, grams,
grams per kWh), counters end in ``_total``. Labels are low-cardinality: region, source,
namespace, state, reason, provider, outcome, target, policy (a CarbonAwarePolicy's name: a
few per namespace). Never a job name or a pod name.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

HOLD_HOURS = (0.25, 0.5, 1, 2, 4, 8, 12, 24, 48, 168)
HOLD_BUCKETS = (60, 300, *(hours * 3600 for hours in HOLD_HOURS))
GRAMS_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000)
LATENESS_BUCKETS = (0, 1, 5, 15, 60, 300, 900, 3600)
# How far from its nominal time a cron job's run started, before or after it.
OFFSET_BUCKETS = (0, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
REFRESH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RECONCILE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """Every collector of the operator, on its own registry (one per process, or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The standard process_* series: memory, CPU, open files and the start time.
        ProcessCollector(registry=r)
        self.grid_intensity = Gauge(
            "carbonaware_grid_intensity_grams_per_kwh",
            "Grid carbon intensity now, gCO2e/kWh, by region and the source that gave it.",
            ["region", "source"],
            registry=r,
        )
        self.grid_intensity_forecast_min = Gauge(
            "carbonaware_grid_intensity_forecast_min_grams_per_kwh",
            "Lowest forecast intensity over the next 24 hours, gCO2e/kWh.",
            ["region", "source"],
            registry=r,
        )
        self.forecast_mae = Gauge(
            "carbonaware_forecast_mae_grams",
            "Mean absolute error of each forecast source over the recent days, gCO2e/kWh, by"
            " region, source (provider, own, naive, blend) and lead-time bucket.",
            ["region", "source", "lead"],
            registry=r,
        )
        self.forecast_weight = Gauge(
            "carbonaware_forecast_weight",
            "Weight of each source in the blended forecast the policy plans on, by region, source"
            " and lead-time bucket (the weights of a bucket sum to 1).",
            ["region", "source", "lead"],
            registry=r,
        )
        self.jobs = Gauge(
            "carbonaware_jobs",
            "Jobs the operator knows, by namespace, kind (CarbonAwareJob or Job) and state.",
            ["namespace", "kind", "state"],
            registry=r,
        )
        self.releases = Counter(
            "carbonaware_releases_total",
            "Jobs released, by namespace and release reason.",
            ["namespace", "reason"],
            registry=r,
        )
        self.hold_duration = Histogram(
            "carbonaware_hold_duration_seconds",
            "Time from creation to release.",
            ["namespace", "policy"],
            buckets=HOLD_BUCKETS,
            registry=r,
        )
        self.emitted_grams = Counter(
            "carbonaware_emitted_grams_total",
            "Estimated gCO2e of finished runs (operational + embodied), by namespace.",
            ["namespace"],
            registry=r,
        )
        self.counterfactual_grams = Counter(
            "carbonaware_counterfactual_grams_total",
            "gCO2e the finished runs would have emitted had each started at creation, by"
            " namespace. Avoided = this - carbonaware_emitted_grams_total, signed: negative when"
            " holding cost more than it saved.",
            ["namespace"],
            registry=r,
        )
        self.energy_kwh = Counter(
            "carbonaware_energy_kwh_total",
            "Estimated energy of finished runs in kWh, by namespace.",
            ["namespace"],
            registry=r,
        )
        self.run_sci = Histogram(
            "carbonaware_run_sci_grams",
            "SCI of each finished run: gCO2e per functional unit.",
            ["namespace"],
            buckets=GRAMS_BUCKETS,
            registry=r,
        )
        self.provider_requests = Counter(
            "carbonaware_provider_requests_total",
            "Grid-intensity requests by provider and outcome: each upstream HTTP attempt (ok or "
            "the failure's class), each fetch of a local source, each stale answer.",
            ["provider", "outcome"],
            registry=r,
        )
        self.target_reachable = Gauge(
            "carbonaware_servertarget_reachable",
            "1 when the last probe of a ServerTarget succeeded, else 0.",
            ["namespace", "target"],
            registry=r,
        )
        self.release_lateness = Histogram(
            "carbonaware_release_lateness_seconds",
            "Release time minus the job's latest start, 0 when on time: alert on any positive"
            " observation (carbonaware_late_releases_total).",
            ["namespace"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.late_releases = Counter(
            "carbonaware_late_releases_total",
            "Jobs released after their latest start (the deadline promise was broken).",
            ["namespace"],
            registry=r,
        )
        self.cron_runs = Counter(
            "carbonaware_cronjob_periods_total",
            "Periods of CarbonAwareCronJobs by namespace and outcome: created (a run), missed"
            " (after downtime, or past startingDeadlineSeconds), forbidden (waited for an active"
            " run, concurrencyPolicy Forbid), replaced (an active run deleted, Replace).",
            ["namespace", "outcome"],
            registry=r,
        )
        self.cron_start_offset = Histogram(
            "carbonaware_cronjob_start_offset_seconds",
            "How far from its nominal time each CarbonAwareCronJob run started: direction"
            " before (the window let it start early on a cleaner grid) or after (at or after"
            " the nominal time).",
            ["namespace", "direction"],
            buckets=OFFSET_BUCKETS,
            registry=r,
        )
        self.policy_admissions = Counter(
            "carbonaware_policy_admissions_total",
            "Jobs the admission webhook saw created, by namespace and outcome: enforced (a"
            " CarbonAwarePolicy in Enforce mode holds it), shadowed (one in Shadow mode watches"
            " it), ungoverned (no policy matched, or the Job is exempt), error (the policies could"
            " not be read in time: the Job is created unchanged).",
            ["namespace", "outcome"],
            registry=r,
        )
        self.shadow_emitted_grams = Counter(
            "carbonaware_shadow_emitted_grams_total",
            "SCI grams of finished Jobs a Shadow CarbonAwarePolicy watched (they ran at once).",
            ["namespace", "policy"],
            registry=r,
        )
        self.shadow_would_have_grams = Counter(
            "carbonaware_shadow_would_have_grams_total",
            "What the same Jobs would have emitted had the policy held them to its planned"
            " start; emitted minus this is what Enforce would have saved.",
            ["namespace", "policy"],
            registry=r,
        )
        self.loop_last_success = Gauge(
            "carbonaware_loop_last_success_timestamp_seconds",
            "Unix time the refresh loop last completed a tick; alert when it falls behind.",
            registry=r,
        )
        self.decision_horizon = Gauge(
            "carbonaware_decision_horizon_seconds",
            "How long before its latest start (operator time) a job is released at the latest:"
            " twice the tick, or 1.5 times the longest recent gap from a tick's decision to"
            " the end of the next tick.",
            registry=r,
        )
        self.refresh_duration = Histogram(
            "carbonaware_refresh_duration_seconds",
            "Wall time of one refresh tick (fetch, re-plan, release).",
            buckets=REFRESH_BUCKETS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "carbonaware_reconcile_duration_seconds",
            "Wall time of one pass checking released work against its children (beside the"
            " ticks; the next pass starts only when one ends).",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )

    def know_namespace(self, namespace: str) -> None:
        """Start the run counters of ``namespace`` at zero, so that ``increase()`` over any
        period counts its first run too (a series born at its first value loses it)."""
        for counter in (self.emitted_grams, self.counterfactual_grams, self.energy_kwh):
            counter.labels(namespace)
        self.run_sci.labels(namespace)

    def forget_target(self, namespace: str, target: str) -> None:
        """Drop a deleted ServerTarget's reachability series (no-op if it was never probed)."""
        if (namespace, target) in {
            (sample.labels["namespace"], sample.labels["target"])
            for family in self.target_reachable.collect()
            for sample in family.samples
        }:
            self.target_reachable.remove(namespace, target)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``port`` from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)
