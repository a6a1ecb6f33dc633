# aidp — the two commands are `make run` (the main job) and `make test` (everything).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := .testbin/bin
OPA := $(BIN)/opa
DEV_STATE ?= .dev
PYTEST_ARGS ?=

.PHONY: help venv venv-nca testbin lint fmt test test-unit test-integration test-rego run down bench fuzz clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# constraints.txt pins every dependency to the versions CI tested (`make lock` refreshes it)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create the virtualenv with aidp and the dev tools

.PHONY: lock
lock: ## refresh constraints.txt: newest versions pyproject.toml allows, in a fresh virtualenv
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^aidp' > constraints.txt
	rm -rf .venv-lock
	@echo "constraints.txt refreshed: run make test, then commit it"

# np-guard's network-config-analyzer pins old dependencies: it lives in a virtualenv of its own
.venv-nca/.installed:
	$(PYTHON) -m venv .venv-nca
	.venv-nca/bin/python -m pip install --quiet 'network-config-analyzer==2.1.0'
	touch $@

venv-nca: .venv-nca/.installed ## the reachability oracle of the egress tests (nca) in .venv-nca

testbin: ## build etcd, kube-apiserver, kube-controller-manager, kubectl, opa, helm, and the node's kubelet, kube-proxy, kube-scheduler, CoreDNS, kube-router (cached per user)
	bash hack/testbin.sh

.PHONY: node-deps images test-node
node-deps: ## Debian packages for the node test bed: containerd, runc, CNI plugins, iptables, ipset, umoci (apt, needs root)
	bash hack/node-deps.sh

images: testbin node-deps ## the node's images without docker (probe, pause, opa) into .testbin/images
	bash hack/images/build.sh

test-node: venv testbin node-deps images ## e2e tests on a real node: packets from pods (root)
	$(VENV)/bin/pytest -m node $(PYTEST_ARGS)

.PHONY: chromium
chromium: ## headless Chromium (HTML report test, aidp audit -o pdf) and pdftotext (Debian packages, needs root)
	(command -v chromium && command -v pdftotext) >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium poppler-utils)

lint: venv testbin ## ruff, mypy --strict, opa check --strict, opa fmt
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack
	$(VENV)/bin/mypy
	$(OPA) check --strict policies
	$(OPA) fmt --list --fail policies

fmt: venv testbin ## format Python and Rego
	$(VENV)/bin/ruff format operator tests bench hack
	$(VENV)/bin/ruff check --fix operator tests bench hack
	$(OPA) fmt --write policies

test-rego: venv testbin ## opa test (every test must pass) and coverage (>= 90% per file)
	$(OPA) test policies
	$(OPA) test policies --coverage --format=json | $(PY) hack/rego_coverage.py

test-unit: venv testbin ## the fast tests (no control plane)
	$(VENV)/bin/pytest -m 'not integration and not node' $(PYTEST_ARGS)

test-integration: venv venv-nca testbin ## tests on the real control plane and OPA
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

test: venv venv-nca testbin chromium ## everything: Rego tests, unit, integration and node tests (the node's as root)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory node-deps images; fi
	$(MAKE) --no-print-directory test-rego
	$(VENV)/bin/pytest $(PYTEST_ARGS)

FUZZ_PAIRS ?= 2000
fuzz: venv testbin ## the Rego/VAP differential test at length: FUZZ_PAIRS (2,000) generated (policy set, workload) pairs, fixed seed
	AIDP_VAP_DIFFERENTIAL_PAIRS=$(FUZZ_PAIRS) $(VENV)/bin/pytest tests/integration/test_vap_differential.py $(PYTEST_ARGS)

run: venv testbin ## the main job: local control plane + OPA + operator + examples + a report (+ a node, as root)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory node-deps images; fi
	$(PY) hack/run.py --state-dir $(DEV_STATE)

down: venv ## stop what `make run` started
	$(VENV)/bin/aidp dev down --state-dir $(DEV_STATE)

.PHONY: testbin-gatekeeper
testbin-gatekeeper: ## OPA Gatekeeper's manager, CRDs and RBAC for the admission bench's peer (cached per user; make bench only)
	bash hack/testbin-gatekeeper.sh

bench: venv testbin testbin-gatekeeper ## benchmarks on the local control plane -> bench/results.json, docs/performance.md
	$(PY) -m bench.run $(BENCH_ARGS)

clean: ## remove the virtualenv, the dev state and caches (not the per-user testbin cache)
	rm -rf $(VENV) .venv-nca $(DEV_STATE) .pytest_cache .mypy_cache .ruff_cache

# ---- container image and a real cluster (docker; kind for kind-e2e) -------------------------
# the tag the chart installs by default (its appVersion), so that `make image` and the chart agree
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/aidp/Chart.yaml)
IMAGE ?= aidp:$(APP_VERSION)

.PHONY: image kind-e2e
image: ## build the aidp container image with docker (IMAGE=name:tag, default aidp:<the chart's appVersion>, the image the chart installs by default)
	docker build -t $(IMAGE) .

kind-e2e: venv venv-nca testbin ## kind cluster + image + Helm chart, then the integration tests against it
	IMAGE=$(IMAGE) bash hack/kind-e2e.sh
