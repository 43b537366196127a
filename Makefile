# Developer entry points. `make demo` is the quickest way to see the operator work.

PYTHON ?= python3

.PHONY: demo demo-down

# demo starts a local control plane (built from source once, ~15 min on 2 cores), a local
# OpenSSH server, the operator replaying the GB 2024 grid trace, and example jobs in the
# namespace carbon-demo; it prints what happened and how to explore (docs/demo.md).
demo:
	$(PYTHON) hack/demo.py up

# demo-down stops everything `make demo` started: the operator, sshd and the control plane.
demo-down:
	$(PYTHON) hack/demo.py down
