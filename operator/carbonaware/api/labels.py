"""Label and annotation keys under the ``carbonaware.io`` domain."""

from __future__ import annotations

DOMAIN = "carbonaware.io"

# Labels
MANAGED = f"{DOMAIN}/managed"  # "true" on plain suspended Jobs the operator should hold
MANAGED_CHILD = "child"  # MANAGED's value on the Jobs the operator creates itself
MANAGED_SHADOW = "shadow"  # MANAGED's value on Jobs a Shadow CarbonAwarePolicy only watches
EXEMPT = f"{DOMAIN}/exempt"  # "true" on a Job no CarbonAwarePolicy may govern
JOB_NAME = f"{DOMAIN}/job-name"  # on children: the CarbonAwareJob that created them
JOB_UID = f"{DOMAIN}/job-uid"
TARGET_NAME = f"{DOMAIN}/target"  # on SSH-runner pods: the ServerTarget name
SSH_KEY = f"{DOMAIN}/ssh-key"  # "true" on an Opaque Secret allowed as a ServerTarget key
CRONJOB = f"{DOMAIN}/cronjob"  # on a CarbonAwareCronJob's runs: the cron job's name
NOMINAL_TIME = f"{DOMAIN}/nominal-time"  # annotation on those runs: the period's nominal time

# Schedule annotations on plain Jobs (mirroring spec.schedule of a CarbonAwareJob)
POLICY = f"{DOMAIN}/policy"
MAX_DELAY_SECONDS = f"{DOMAIN}/max-delay-seconds"
DEADLINE_TIME = f"{DOMAIN}/deadline-time"
EXPECTED_DURATION_SECONDS = f"{DOMAIN}/expected-duration-seconds"
MAX_INTENSITY = f"{DOMAIN}/max-intensity"
MAX_INDEX = f"{DOMAIN}/max-index"
REGION = f"{DOMAIN}/region"
PRIORITY = f"{DOMAIN}/priority"
# JSON of spec.schedule.interruptible: {"minRunSeconds": 3600, "maxInterruptions": 4, ...}
INTERRUPTIBLE = f"{DOMAIN}/interruptible"

# Status annotations on plain Jobs (they have no status of ours)
STATE = f"{DOMAIN}/state"
REASON = f"{DOMAIN}/reason"
PLANNED_START_TIME = f"{DOMAIN}/planned-start-time"
LATEST_START_TIME = f"{DOMAIN}/latest-start-time"
LATEST_START_BOUND = f"{DOMAIN}/latest-start-bound"  # Deadline, MaxDelay or DefaultMaxDelay
PARENT_GENERATION = f"{DOMAIN}/parent-generation"  # on children: the spec they were made from
RELEASE_TIME = f"{DOMAIN}/release-time"
INTENSITY_AT_CREATION = f"{DOMAIN}/intensity-at-creation"
INTENSITY_AT_RELEASE = f"{DOMAIN}/intensity-at-release"
SEGMENTS = f"{DOMAIN}/segments"  # interruptible: JSON of status.segments
WORK_DONE_SECONDS = f"{DOMAIN}/work-done-seconds"
INTERRUPTIONS = f"{DOMAIN}/interruptions"

# On Jobs a CarbonAwarePolicy governs (set at admission by the operator's webhook)
GOVERNING_POLICY = f"{DOMAIN}/governing-policy"  # the CarbonAwarePolicy's name
POLICY_MODE = f"{DOMAIN}/policy-mode"  # Enforce or Shadow
# Shadow: what the policy would have done (at creation) and would have emitted (at the end)
SHADOW_PLANNED_START = f"{DOMAIN}/shadow-planned-start-time"
SHADOW_REASON = f"{DOMAIN}/shadow-reason"  # the decision's reason (Forecast, Threshold...)
SHADOW_INTENSITY_NOW = f"{DOMAIN}/shadow-expected-intensity-now"  # g/kWh, run at once
SHADOW_INTENSITY_PLANNED = f"{DOMAIN}/shadow-expected-intensity-planned"  # g/kWh, as planned
SHADOW_WOULD_HAVE_GRAMS = f"{DOMAIN}/shadow-would-have-grams"  # the run, started as planned
SHADOW_WOULD_HAVE_SAVED_GRAMS = f"{DOMAIN}/shadow-would-have-saved-grams"  # emitted - that

# SCI annotations on Jobs and pods
SCI_GRAMS = f"{DOMAIN}/sci-grams"
SCI_PER_UNIT_GRAMS = f"{DOMAIN}/sci-per-unit-grams"
ENERGY_KWH = f"{DOMAIN}/energy-kwh"
OPERATIONAL_GRAMS = f"{DOMAIN}/operational-grams"
EMBODIED_GRAMS = f"{DOMAIN}/embodied-grams"
AVOIDED_GRAMS = f"{DOMAIN}/avoided-grams"
CPU_CORE_SECONDS = f"{DOMAIN}/cpu-core-seconds"
INTENSITY_RUN_MEAN = f"{DOMAIN}/intensity-run-mean"
CPU_KWH = f"{DOMAIN}/cpu-kwh"
MEMORY_KWH = f"{DOMAIN}/memory-kwh"
GPU_KWH = f"{DOMAIN}/gpu-kwh"
ENERGY_SOURCE = f"{DOMAIN}/energy-source"  # measured | modelled | reservation
INTENSITY_SOURCE = f"{DOMAIN}/intensity-source"  # the provider(s) that priced the run

# kopf's own bookkeeping lives under our domain
KOPF_PREFIX = f"kopf.{DOMAIN}"

# Overrides: annotations a person (kubectl, GitOps) sets on a CarbonAwareJob or a managed Job
RELEASE_NOW = f"{DOMAIN}/release-now"  # release at the next decision, whatever the policy says
HOLD = f"{DOMAIN}/hold"  # keep holding until removed; the deadline still releases unless "force"
CANCEL = f"{DOMAIN}/cancel"  # end the job Failed (Cancelled); a running child is stopped
