# benchbed: `make demo` sets everything up and runs a real deployment; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLIENTS := .venv-clients
# apt, dpkg and pip write into one log per `make` run (tools/quietly.sh prints its path once);
# the terminal gets one line per setup step, and the log's tail if a step fails
ifndef BENCHBED_SETUP_LOG
BENCHBED_SETUP_LOG := $(CURDIR)/.logs/setup-$(shell date +%Y%m%d-%H%M%S).log
endif
export BENCHBED_SETUP_LOG
QUIETLY := tools/quietly.sh

.PHONY: demo demo-check test test-long lint shellcheck unit integration bench host venv clients clean upstream docs

host:
	@$(QUIETLY) "Debian packages (tools/host-packages.sh)" tools/host-packages.sh
	@$(QUIETLY) "daemons (tools/host-daemons.sh)" tools/host-daemons.sh

$(BIN)/benchbed: pyproject.toml
	@$(QUIETLY) "virtualenv $(VENV): benchbed and its test tools" \
		tools/venv.sh $(VENV) $(PYTHON) -e '.[test,libvirt]'
	@touch $@

venv: $(BIN)/benchbed

# The real benchmark clients, in a venv of their own as users have them.
$(CLIENTS)/bin/rally:
	@$(QUIETLY) "virtualenv $(CLIENTS): rally, rally-openstack, openstack, ansible, benchbed" \
		tools/venv.sh $(CLIENTS) $(PYTHON) 'rally==5.1.1' 'rally-openstack==4.1.0' \
		python-openstackclient 'ansible-core==2.19.14' -e .
	@touch $@

clients: $(CLIENTS)/bin/rally

# shared/upstream's OpenStack repositories as /var/cache/benchbed-upstream/openstack-2025.1/
# openstack/NAME.git, a git_mirror for DevstackEngine (the tests and bench/devstack make it too)
upstream: venv
	$(BIN)/python -m tests.upstream

lint: venv shellcheck
	@$(BIN)/ruff check benchbed tests bench
	@$(BIN)/mypy

# Every shell script of the repository (*.sh, and bench/*/run written in bash): the
# package's own, tools/ and bench/.
shellcheck:
	@{ git ls-files --cached --others --exclude-standard '*.sh'; \
	  git ls-files --cached --others --exclude-standard | xargs grep -lIs '^#!.*/\(env \)\?\(ba\)\?sh$$'; \
	} | sort -u | xargs shellcheck -x

# The integration files run on two pytest-xdist workers, a file per worker at a time (each
# file owns its networks and names, so two never meet), longest first so that the last file
# to start is a short one; on two cores this overlaps one file's waits (boots, SSH, polls,
# single-threaded dpkg) with another's work (--no-loadscope-reorder: xdist would otherwise
# start the files with the most tests first, and the longest one, test_devstack, began 24
# minutes in). Unit tests first: a failure shows in a minute. The slowest tests are listed.
INTEGRATION_ORDER := test_devstack test_nova test_openstack_provider test_existing_cloud test_task test_postgres_cli \
	test_snapshot test_debian test_fuel test_multihost test_virsh test_faults test_virsh_snapshot \
	test_ansible test_fuel_keystone test_report test_lxc test_gone_servers test_routed_hosts test_image_streaming test_virsh_remote \
	test_core_cli test_export_readers test_races test_planted_files test_doctor test_api \
	test_hardening_cli test_ec2 test_fuzz_cli test_terminal test_task_report \
	test_example_provider test_sampler test_rally_platform
INTEGRATION_FILES := $(patsubst %,tests/integration/%.py,$(INTEGRATION_ORDER))

test: host venv clients lint docs
	@test "$$(ls tests/integration/test_*.py | sort)" = "$$(ls $(INTEGRATION_FILES) | sort)" \
		|| { echo "Makefile: INTEGRATION_ORDER must name every tests/integration/test_*.py"; exit 2; }
	@$(BIN)/pytest -q -x -p no:cacheprovider tests/unit
	@$(BIN)/pytest -q -x -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder \
		--durations=25 $(INTEGRATION_FILES)

# End-to-end runs kept out of CI's budget: DevStack's failure cases (a missing branch, a
# repository that does not answer, stack.sh failing halfway), DevStack's multinode and LXC
# nodes, and Nova across namespace hosts with a host cut off; run before changing them.
test-long: host venv clients
	@$(BIN)/pytest -q -x -p no:cacheprovider tests/long

# The documentation site: the configuration reference is generated from the plugins' typed
# configs first; --strict fails on a broken link or a page missing from the nav. Into site/.
docs: venv
	@$(BIN)/python tools/config_reference.py docs/configuration.md
	@$(BIN)/mkdocs build --strict --quiet --site-dir site

unit: venv
	@$(BIN)/pytest -q tests/unit

demo: host venv clients
	@tools/demo.sh

# `make demo` from a fresh clone, on a terminal: fails if it prints more than 40 lines
demo-check:
	@tools/check-demo-lines.sh

# every bench/*/run, then a table of each target (ratio, target, pass/FAIL); fails if any missed
bench: host venv clients
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) $(CLIENTS) build *.egg-info .logs .demo site docs/configuration.md
