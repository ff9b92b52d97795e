# kslab entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := venv
STACK ?= standalone
export KSLAB_CACHE ?= $(HOME)/.cache/kslab
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: help venv check test engine kube kind-tier preview up destroy outputs status graph images images-save registry crash-campaign bench harness-up harness-down

help:
	@echo "make up STACK=<name>       create/converge the lab of stacks/Pulumi.<name>.yaml (main job)"
	@echo "make preview STACK=<name>  plan only, with the policy pack"
	@echo "make destroy STACK=<name>  unjoin, then delete everything the lab created"
	@echo "make outputs STACK=<name>  show the stack outputs (add ARGS=--show-secrets for kubeconfigs)"
	@echo "make status STACK=<name>   the running lab at a glance, with findings and fixes (ARGS=--json); exit 1 on findings"
	@echo "make images STACK=<name>   every image the lab pulls and where it comes from (ARGS=--check asks the registries)"
	@echo "make images-save STACK=<name> OUT=<file>  every planned image into one archive (for kslab:imageArchives)"
	@echo "make registry ARGS=<list|size|status|remove --yes>  the lab registry every lab shares (STACK= names its own)"
	@echo "make graph STACK=<name>    draw the lab to <name>.svg and <name>.png (coloured by live status once it is up)"
	@echo "make check                 lint (shellcheck, ruff), types (mypy) and the fast tests: pure functions, mocks, policies (~2 min)"
	@echo "make test                  every test this machine can run (builds the engine etc. once)"
	@echo "make engine | make kube    build/locate the Pulumi engine | kube-apiserver+etcd (cached)"
	@echo "make kind-tier             Docker, kind and the node image for the real-kind tier (cached)"
	@echo "make harness-up STACK=<s>  play KubeSphere for a test stack (live-* or kind-*); make harness-down"
	@echo "make bench                 benchmarks (bench/)"
	@echo "make crash-campaign        kill up/destroy on the live tier at many moments, recover, check (TRIALS=10)"

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

check: venv
	@tools/lib/shellcheck.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PYTEST) -q -m "not engine and not live and not kind"

engine:
	@tools/engine/build.sh

kube:
	@tools/kube/build.sh

test: venv
	@set -euo pipefail; \
	eval "$$(tools/engine/build.sh)"; \
	eval "$$(tools/kube/build.sh)"; \
	eval "$$(tools/kind/tier.sh)"; \
	trap '[ -z "$${KSLAB_DOCKER_STARTED:-}" ] || tools/docker/docker.sh stop' EXIT; \
	eval "$$(tools/registry/build.sh)"; \
	tools/graph/dot.sh; \
	$(PYTEST) -q -rfs

kind-tier:
	@tools/kind/tier.sh

harness-up: venv
	@test -n "$(filter live-% kind-%,$(STACK))" || { echo "usage: make harness-up STACK=<live-...|kind-...> (a stack of tests/stacks)"; exit 2; }
	@set -euo pipefail; eval "$$(tools/kube/build.sh)"; \
	if [[ "$(STACK)" == kind-* ]]; then eval "$$(tools/kind/tier.sh)"; fi; \
	$(VENV)/bin/python -m tests.harness.lab_harness up $(STACK)

harness-down: venv
	@set -euo pipefail; eval "$$(tools/docker/docker.sh env)"; eval "$$(tools/kind/build.sh 2>/dev/null)"; \
	$(VENV)/bin/python -m tests.harness.lab_harness down

bench: venv
	$(VENV)/bin/python -m bench.bench_program
	@set -euo pipefail; eval "$$(tools/engine/build.sh)"; eval "$$(tools/kube/build.sh)"; \
	eval "$$(tools/kind/tier.sh)"; \
	trap '[ -z "$${KSLAB_DOCKER_STARTED:-}" ] || tools/docker/docker.sh stop' EXIT; \
	$(VENV)/bin/python -m bench.bench_engine; $(VENV)/bin/python -m bench.bench_live; \
	$(VENV)/bin/python -m bench.bench_kind; $(VENV)/bin/python -m bench.bench_status; \
	eval "$$(tools/registry/build.sh)"; $(VENV)/bin/python -m bench.bench_images; $(VENV)/bin/python -m bench.bench_lab_registry

# Thin calls to the kslab command (kslab/cli/main.py; `make help` above names them).
KSLAB := $(VENV)/bin/python -m kslab

preview up destroy: venv
	$(KSLAB) $@ $(STACK) $(ARGS)

outputs: venv
	$(KSLAB) outputs $(STACK) $(ARGS)

status: venv
	@$(KSLAB) status $(STACK) $(ARGS)

images: venv
	@$(KSLAB) images $(STACK) $(ARGS)

registry: venv
	@$(KSLAB) registry $(STACK) $(ARGS)

images-save: venv
	@test -n "$(OUT)" || { echo "usage: make images-save STACK=<name> OUT=<file>"; exit 2; }
	@$(KSLAB) images $(STACK) --save $(abspath $(OUT))

graph: venv
	@$(KSLAB) graph $(STACK) $(if $(OUT),--out-dir $(abspath $(OUT))) $(ARGS)

# Kills `up`/`destroy` of the live host-member lab at many moments (Ctrl-C, Ctrl-C twice, SIGKILL), recovers each
# through tools/lab.sh alone and checks the lab; last line: trials=N recovered=R lost=L (tests/support/crash.py).
TRIALS ?= 10
crash-campaign: venv
	@set -euo pipefail; eval "$$(tools/engine/build.sh)"; eval "$$(tools/kube/build.sh)"; \
	$(VENV)/bin/python -m tests.support.crash --trials $(TRIALS)
