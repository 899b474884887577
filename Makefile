# Everything a user or CI needs: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
# pip is pinned like every other package (an unpinned upgrade changes under a user).
PIP_VERSION := 26.3
PY := $(VENV)/bin/python
PROFILE ?= k3s
SIM := cd sim && ../$(PY) -m sim
COLLECTION_DIR := .collections/ansible_collections/llmops/ollama
PYTEST_ARGS ?=
SIM_KUBECTL = $$(cd sim && ../$(PY) -c 'from sim.build import binary_path; print(binary_path("kubectl"))')

.PHONY: help deps venv sim-build sim-up sim-down sim-status sim-node sim-restart demo test unit integration lint sanity molecule collection ee clean gpu-pack gpu-check judges judges-env

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the simulator and the tests need (as root); check Go
	@command -v go >/dev/null || { echo "go is not on PATH: install Go 1.26 or newer (Debian's golang-go is too old)"; exit 2; }
	@missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v sudo >/dev/null || missing="$$missing sudo"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v ipset >/dev/null || missing="$$missing ipset"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# An install stopped half-way (no .installed yet) starts again from an empty environment.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(if $(wildcard $@),,--clear) $(VENV)
	$(VENV)/bin/pip install -q pip==$(PIP_VERSION)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed ## Create the pinned Python environment in .venv

# checkov pins packaging<24, which pytest 9 cannot share: the judges get an environment of their own.
JUDGES_VENV := .venv-judges
$(JUDGES_VENV)/.installed: requirements-judges.txt
	$(PYTHON) -m venv $(if $(wildcard $@),,--clear) $(JUDGES_VENV)
	$(JUDGES_VENV)/bin/pip install -q pip==$(PIP_VERSION)
	$(JUDGES_VENV)/bin/pip install -q -r requirements-judges.txt
	touch $@

judges-env: $(JUDGES_VENV)/.installed ## Create checkov's pinned environment in .venv-judges

collection: ## Make the checkout importable as ansible_collections.llmops.ollama
	@mkdir -p $(dir $(COLLECTION_DIR))
	@ln -sfn ../../.. $(COLLECTION_DIR)

sim-build: deps venv ## Build etcd, Kubernetes, KWOK and Ollama from Go modules (cached)
	$(SIM) build

sim-up: sim-build ## Start the simulated cluster: make sim-up PROFILE=k3s|baremetal|eks|...
	$(SIM) up --profile $(PROFILE)

sim-down: ## Stop the simulated cluster and remove its state
	@if [ -x $(PY) ]; then $(SIM) down; fi

sim-status: venv ## Show the simulated cluster's nodes
	$(SIM) status

sim-node: venv ## Take a node down or bring it back: make sim-node NODE=k3s-gpu-0 STATE=down|up
	@if [ -z "$(NODE)" ] || [ -z "$(STATE)" ]; then echo "usage: make sim-node NODE=<node> STATE=down|up (make sim-status lists the nodes)"; exit 2; fi
	$(SIM) node '$(NODE)' --state '$(STATE)'

sim-restart: venv ## Restart one control-plane process in place: make sim-restart COMPONENT=kube-apiserver
	@if [ -z "$(COMPONENT)" ]; then echo "usage: make sim-restart COMPONENT=kube-apiserver|kube-controller-manager|kube-scheduler|etcd"; exit 2; fi
	$(SIM) restart '$(COMPONENT)'

demo: sim-up collection ## Set everything up, start the simulated GPU cluster and converge Ollama onto it
	ANSIBLE_CONFIG=ansible.cfg $(VENV)/bin/ansible-playbook -i inventories/sim playbooks/site.yml
	@echo "KUBECONFIG=$(CURDIR)/.sim/kubeconfig"
	@$(SIM_KUBECTL) --kubeconfig=.sim/kubeconfig get pods -n ollama -o wide

unit: venv collection ## Unit tests
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

integration: sim-build collection judges-env ## Integration tests against the simulated cluster
	$(PY) -m pytest tests/integration -q $(PYTEST_ARGS)

judges: sim-build collection judges-env ## kube-score and checkov on the objects site.yml renders for k3s and EKS (docs/judges.md)
	$(PY) -m pytest tests/integration/collection/test_judges.py -q $(PYTEST_ARGS)

lint: venv collection ## ansible-lint with the production profile
	$(VENV)/bin/ansible-lint --profile production

sanity: venv ## ansible-test sanity, no ignore entries
	tests/sanity/run.sh

molecule: sim-build collection ## Molecule scenarios (k3s-single, k3s-ha, eks-ha) against the simulated cluster
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/molecule test --all

ee: venv ## ansible-builder create: the execution environment's build context in .cache/ee (no container engine)
	rm -rf .cache/ee
	$(VENV)/bin/ansible-builder create -f meta/execution-environment.yml --context .cache/ee --output-filename Containerfile
	@test -s .cache/ee/Containerfile && test -s .cache/ee/_build/requirements.txt && test -s .cache/ee/_build/bindep.txt \
	  && test -s .cache/ee/_build/requirements.yml || { echo "ansible-builder create left an incomplete context in .cache/ee"; exit 1; }

test: sim-build collection lint sanity ee ## The whole suite: lint, sanity, ee, unit and integration tests, judges, molecule
	$(PY) -m pytest tests/unit tests/integration -q --ignore=tests/integration/collection/test_judges.py $(PYTEST_ARGS)
	$(MAKE) --no-print-directory judges
	$(MAKE) --no-print-directory molecule

gpu-pack: venv ## Pack what the GPU machine needs into .gpu-carry/ (Ollama, ggml sources, wheels, collection, model)
	$(PY) gpu/pack.py --out .gpu-carry

gpu-check: ## On the GPU machine: build the CUDA backend, run the modules and the VRAM estimate (docs/gpu.md)
	bash gpu/run.sh

clean: sim-down ## Remove local state (keeps the build cache)
	rm -rf .collections .pytest_cache
