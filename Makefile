# ebpf.deploy — the two README commands are `make demo` and `make test`.
# Every target installs what it needs when it is missing and is quick when nothing is.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PUB_VENV    ?= .venv-publish
PY          := $(CURDIR)/$(VENV)/bin/python
BUILD       := $(CURDIR)/build
BPF_OUT     := $(BUILD)/bpf
COLL_PATH   := $(CURDIR)/.build/collections
COLL_LINK   := $(COLL_PATH)/ansible_collections/ebpf/deploy
LAB_HOSTS   ?= 3
LAB_STATE   ?= $(BUILD)/lab
LAB_VMS     ?= 0
LAB_VM_IMAGES ?= debian12
# the VM lab's tests are their own tier, `vm` (make test runs it beside the tiers that mostly use one core)
VM_TESTS    := tests/integration/test_vm_lab.py tests/integration/test_vm_hooks.py tests/integration/test_vm_rollout.py
INTEGRATION ?= tests/integration $(addprefix --ignore=,$(VM_TESTS))
# integration and fault test files run on this many pytest-xdist workers, a file to a worker (each file brings
# up its own lab and names everything it makes at random); most of a file's time is spent waiting
# on ssh, soaks and deadlines, not on the CPU. WORKERS=0 runs them in one process.
WORKERS     ?= 3
PARALLEL    := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)
VM          ?= $(VM_TESTS)
# the VM files run on two workers, each with a lab of its own (the images are built once, under a
# lock): test_vm_lab.py on one, test_vm_hooks.py then test_vm_rollout.py on the other (pytest-xdist
# hands a file to the first worker with two tests or fewer left, and test_vm_lab.py holds the most), so
# both take about as long; their guests spend most of their time in module imports under TCG
VM_WORKERS  ?= 2
FAULT       ?= tests/fault
COMPAT      ?=
DURATIONS   ?= --durations=15
comma := ,

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export EBPF_DEPLOY_BPF_DIR := $(BPF_OUT)
export EBPF_DEPLOY_LAB_STATE := $(LAB_STATE)
export EBPF_DEPLOY_LAB_IMAGES := $(BUILD)/images
export PYTHONDONTWRITEBYTECODE := 1

TIMED := tools/timed

.PHONY: help deps venv bpf collection unit sanity lint integration vm molecule fault bench docs \
        publish compat demo test lab-up lab-down build-collection clean

help:
	@echo "make demo   - canary rollout onto a local lab of hosts (sets itself up)"
	@echo "make test   - every test tier: compat sanity publish molecule docs unit lint with vm beside them, then integration fault"
	@echo "finer: deps venv bpf unit sanity lint integration vm molecule fault bench docs publish compat lab-up lab-down build-collection"

# --- set-up ---------------------------------------------------------------------------------
deps:
	@tools/install-system-deps.sh

$(VENV)/.installed: requirements.txt requirements-test.txt requirements-docs.txt constraints.txt | deps
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt -c constraints.txt
	@touch $@

venv: $(VENV)/.installed

# galaxy-importer pins attrs<24, older than the test venv's: the publishing checks get their own venv
$(PUB_VENV)/.installed: requirements-publish.txt constraints-publish.txt | deps
	@test -x $(PUB_VENV)/bin/python || python3 -m venv $(PUB_VENV)
	@$(PUB_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-publish.txt -c constraints-publish.txt
	@touch $@

$(COLL_LINK):
	@mkdir -p $(dir $@)
	@ln -sfn $(CURDIR) $@

collection: venv $(COLL_LINK)

BPF_SRC := $(wildcard examples/bpf/*.bpf.c tests/bpf/*.bpf.c)
BPF_OBJ := $(addprefix $(BPF_OUT)/,$(notdir $(BPF_SRC:.c=.o)))
BPF_CFLAGS := -O2 -g -Wall -target bpf -I/usr/include/$(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu) -Iexamples/bpf/include
vpath %.bpf.c examples/bpf tests/bpf

$(BPF_OUT)/%.bpf.o: %.bpf.c $(wildcard examples/bpf/include/*.h) | deps
	@mkdir -p $(BPF_OUT)
	clang $(BPF_CFLAGS) -c $< -o $@

bpf: $(BPF_OBJ)

# --- test tiers -----------------------------------------------------------------------------
unit: collection
	@$(TIMED) unit $(PY) -m pytest -q tests/unit

sanity: collection
	@$(TIMED) sanity tools/sanity.sh

lint: collection
	@$(TIMED) lint tools/lint.sh

integration: collection bpf
	@$(TIMED) integration $(PY) -m pytest -q $(PARALLEL) $(DURATIONS) $(INTEGRATION)

# the VM lab hosts (Debian 12 and 13 under qemu): `VM=` a test file or node id to run just that
vm: collection bpf
	@$(TIMED) vm $(PY) -m pytest -q $(if $(filter 0,$(VM_WORKERS)),,-n $(VM_WORKERS) --dist loadfile) $(DURATIONS) $(VM)

molecule: collection bpf
	@$(TIMED) molecule tools/molecule.sh

fault: collection bpf
	@$(TIMED) fault $(PY) -m pytest -q $(PARALLEL) $(DURATIONS) $(FAULT)

bench: collection bpf
	@$(TIMED) bench $(PY) tools/bench.py $(BENCH)

docs: collection
	@$(TIMED) docs tools/docs.sh

publish: collection $(PUB_VENV)/.installed
	@$(TIMED) publish tools/publish.sh

# sanity, unit and a smoke integration run under each newer ansible-core (constraints-core-*.txt),
# each in its own venv under .build; COMPAT=2.21 runs one
compat: collection bpf
	@$(TIMED) compat tools/compat.sh $(COMPAT)

# the vm tier runs beside the tiers that mostly use one core, from the start (tools/run-tiers
# --beside; its first test builds the VM images, cached under build/images, before it boots them),
# and its lane then takes the next of those tiers not yet started: the long ones come first, so what
# is left when the vm tier ends is short; integration and fault keep both cores busy, so they come
# after, alone (--then)
test: collection bpf
	@tools/run-tiers --beside vm compat sanity publish molecule docs unit lint --then integration fault

# --- lab and demo ---------------------------------------------------------------------------
lab-up: collection
	@ansible-playbook -i localhost, playbooks/lab.yml -e lab_state=present -e lab_host_count=$(LAB_HOSTS) -e lab_dir=$(LAB_STATE) \
	  -e lab_vm_count=$(LAB_VMS) -e '{"lab_vm_images": ["$(subst $(comma),"$(comma)",$(LAB_VM_IMAGES))"]}'

lab-down: collection
	@ansible-playbook -i localhost, playbooks/lab.yml -e lab_state=absent -e lab_dir=$(LAB_STATE)

demo: collection bpf
	@tools/demo.sh

# also as build/ebpf-deploy.tar.gz, the name execution-environment.yml installs (no version in it)
build-collection: collection
	@mkdir -p $(BUILD)
	@tarball=$$(ansible-galaxy collection build --force --output-path $(BUILD) . | sed -n 's/^Created collection for .* at //p') \
	  && echo "built $$tarball" && cp "$$tarball" $(BUILD)/ebpf-deploy.tar.gz

clean:
	rm -rf $(BUILD) .build
