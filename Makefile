# Developer entry points. `make demo` is the quickest way to see the operator work;
# `make test` runs everything CI runs (.ci/run calls it on a fresh clone).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Integration tests mostly wait on API round trips and scaled clocks, so they run on more
# workers than there are cores (on 2 cores, 4 workers finished first: docs/benchmarks.md).
INTEGRATION_WORKERS ?= 4
# Built binaries, images, the virtualenv's dependencies and mypy's cache live here, shared by
# every checkout on the machine (hack/testbed/common.py reads the same variables).
CACHE_DIR ?= $(or $(CARBONAWARE_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/carbon-aware-operator)

.PHONY: demo demo-down test test-fast check crds unit integration venv deps plane-binaries bench

# demo starts a local control plane (built from source once, ~15 min on 2 cores), a local
# OpenSSH server, the operator replaying the GB 2024 grid trace, and example jobs in the
# namespace carbon-demo; it prints what happened and how to explore (docs/demo.md).
demo: venv
	$(PY) hack/demo.py up

# demo-down stops everything `make demo` started: the operator, sshd and the control plane.
demo-down:
	$(PYTHON) hack/demo.py down

# test runs the whole suite: lint, types, import layers, then the unit and integration tests
# (against a real control plane, sshd and Prometheus) in one session. It installs what it
# needs. Tests run on INTEGRATION_WORKERS pytest-xdist workers, each with its own control
# plane; tests of one module stay on one worker, the longest groups start first and the unit
# tests fill the end (tests/integration/workload.py).
# deps come first: some unit tests run their shell scripts under busybox too.
test: deps check plane-binaries
	$(PY) -m pytest -ra -v -n $(INTEGRATION_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=20 tests/unit tests/integration

# test-fast is the inner loop (a few minutes): the static checks and the unit tests.
test-fast: check unit

# check is the static part: ruff (lint and format), mypy --strict, the import-layer contract,
# and the generated CRDs up to date.
check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --cache-dir $(CACHE_DIR)/mypy
	$(VENV)/bin/lint-imports
	$(PY) hack/crds.py --check

# crds writes the CRDs made from others (the CarbonAwareCronJob's embeds the job's spec).
crds: venv
	$(PY) hack/crds.py

unit: venv
	$(PY) -m pytest -q -n auto tests/unit

integration: venv deps plane-binaries
	$(PY) -m pytest -ra -v -n $(INTEGRATION_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=20 tests/integration

# venv creates .venv with the package (editable) and its test and benchmark extras. The
# dependencies are installed once per dependency set under ~/.cache/carbon-aware-operator and
# hard-linked into each checkout's .venv (hack/venv.py).
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) hack/venv.py $(VENV)
	touch $@

# deps installs the Debian packages the tests run for real (etcd, sshd, Prometheus...).
deps:
	$(PYTHON) hack/debian.py

# plane-binaries builds kube-apiserver, controller-manager, scheduler, kubectl, kubelet,
# kube-proxy, kwok and helm, and for the real worker node metrics-server, CoreDNS and the
# images (pause, busybox, the Debian Python base, the operator's own), once; all cached under
# ~/.cache/carbon-aware-operator. Built before the tests start, so no test waits for them.
plane-binaries: deps
	$(PYTHON) hack/localplane.py build --real-node

# bench runs the benchmarks whose figures docs/benchmarks.md reports.
bench: venv plane-binaries
	$(PY) bench/scheduling.py
	$(PY) bench/forecasts.py --jobs 2
	$(PY) bench/interruptible.py --jobs 2
	$(PY) bench/localplane.py
	$(PY) bench/scale.py
	$(PY) bench/realnode.py
	$(PY) bench/regions.py
