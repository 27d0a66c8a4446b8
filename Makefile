# benchbed: `make demo` sets everything up and runs a real deployment; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLIENTS := .venv-clients

.PHONY: demo test lint unit integration bench host venv clients clean upstream

host:
	tools/host-packages.sh
	tools/host-daemons.sh

$(BIN)/benchbed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,libvirt]'
	touch $@

venv: $(BIN)/benchbed

# The real benchmark clients, in a venv of their own as users have them.
$(CLIENTS)/bin/rally:
	$(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/pip install -q --upgrade pip
	$(CLIENTS)/bin/pip install -q 'rally==5.1.1' 'rally-openstack==4.1.0' python-openstackclient
	touch $@

clients: $(CLIENTS)/bin/rally

# shared/upstream's OpenStack repositories as /var/cache/benchbed-upstream/openstack-2025.1/
# openstack/NAME.git, a git_mirror for DevstackEngine (the tests and bench/devstack make it too)
upstream: venv
	$(BIN)/python -m tests.upstream

lint: venv
	$(BIN)/ruff check benchbed tests bench

test: host venv clients lint
	$(BIN)/pytest -q -x -p no:cacheprovider tests

unit: venv
	$(BIN)/pytest -q tests/unit

demo: host venv
	tools/demo.sh

bench: host venv clients
	for b in bench/*/run; do $$b; done

clean:
	rm -rf $(VENV) $(CLIENTS) build *.egg-info
