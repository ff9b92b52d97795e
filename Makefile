# kslab entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := venv
STACK ?= standalone
export KSLAB_CACHE ?= $(HOME)/.cache/kslab
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: help venv check test engine kube preview up destroy outputs bench harness-up harness-down

help:
	@echo "make up STACK=<name>       create/converge the lab of stacks/Pulumi.<name>.yaml (main job)"
	@echo "make preview STACK=<name>  plan only, with the policy pack"
	@echo "make destroy STACK=<name>  unjoin, then delete everything the lab created"
	@echo "make outputs STACK=<name>  show the stack outputs (add ARGS=--show-secrets for kubeconfigs)"
	@echo "make check                 fast tests: pure functions, mocks, policies (~1 min)"
	@echo "make test                  every test this machine can run (builds the engine etc. once)"
	@echo "make engine | make kube    build/locate the Pulumi engine | kube-apiserver+etcd (cached)"
	@echo "make bench                 benchmarks (bench/)"

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

check: venv
	$(PYTEST) -q -m "not engine and not live"

engine:
	@tools/engine/build.sh

kube:
	@tools/kube/build.sh

test: venv
	@set -euo pipefail; \
	eval "$$(tools/engine/build.sh)"; \
	eval "$$(tools/kube/build.sh)"; \
	$(PYTEST) -q -rs

harness-up: venv
	@test -n "$(STACK_TEST)$(filter live-%,$(STACK))" || { echo "usage: make harness-up STACK=live-host-member (a stack of tests/stacks)"; exit 2; }
	@eval "$$(tools/kube/build.sh)"; $(VENV)/bin/python -m tests.harness.lab_harness up $(STACK)

harness-down: venv
	$(VENV)/bin/python -m tests.harness.lab_harness down

bench: venv
	$(VENV)/bin/python -m bench.bench_program
	@set -euo pipefail; eval "$$(tools/engine/build.sh)"; eval "$$(tools/kube/build.sh)"; \
	$(VENV)/bin/python -m bench.bench_engine; $(VENV)/bin/python -m bench.bench_live

preview up destroy: venv
	tools/lab.sh $@ $(STACK) $(ARGS)

outputs: venv
	tools/lab.sh output $(STACK) $(ARGS)
