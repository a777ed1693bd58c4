# Two entry points for a fresh Debian 12 machine (run as root): `make demo` and `make test`.
# Each installs what it needs: Debian packages, then a virtual environment in .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := openssl ca-certificates python3-venv
DEMO_DIR ?= build/demo
# Outside the checkout: the cluster runs as the postgres user, which must be able to reach it.
PG_TEST_DIR ?= /tmp/sztp-test-pg
# The role tests run in their own venv: molecule and the full `ansible` package (for the
# bundled containers.podman) stay out of the development venv that ansible-test uses.
MOLECULE_VENV := .venv-molecule
TEST_IMAGE := localhost/sztp-debian-systemd:bookworm
# Parallel lanes of scenarios (see scripts/run-molecule.sh): the whole stack beside the roles.
MOLECULE_LANES ?= stack server,file_server,kea
WHEEL_DIR := build/wheels
# The ansible-core minors the collection is tested on besides the dev venv's (2.19), one lock
# each, requirements/ansible-<minor>.txt from its .in: from requires_ansible's lower bound
# (meta/runtime.yml) to the newest on PyPI (a test keeps them in step).
ANSIBLE_MATRIX := $(sort $(patsubst requirements/ansible-%.in,%,$(wildcard requirements/ansible-*.in)))

.PHONY: help demo test lint pytest ansible-test ansible-matrix e2e molecule container test-image wheel dist changelog-lint \
	apt-packages bench docs clean lock lock-upgrade lowest

help:
	@echo "make demo   lab PKI, sztp-server, the lab fleet and a simulated device, end to end"
	@echo "make test   install everything needed and run every test suite"
	@echo "make bench  run the benchmarks and update bench/RESULTS.md"
	@echo "make docs   regenerate docs/cli.md, docs/plugins/ and fleet.schema.json from their sources"
	@echo "make lock   regenerate the lock files from pyproject.toml (lock-upgrade: newest versions)"
	@echo "make lowest run the Python suite on the oldest versions pyproject.toml allows"
	@echo "make dist   the sztp wheel and the sztp.bootstrap collection artifact, in dist/"

apt-packages:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Every Python package any venv here installs is pinned, with hashes, in a lock file made by
# `make lock` from pyproject.toml's ranges. The server's lock (the kit and the `server` extra)
# lives in the server role, which installs the same versions on the hosts it deploys; the kit's
# alone is what the collection's plugins need on a controller; the CLI's adds the `cli` extra
# (docs/collection.md). The demo installs the server's and the CLI's.
LOCK_BOOTSTRAP := requirements/bootstrap.txt
LOCK_SERVER := roles/server/files/server-requirements.txt
LOCK_KIT := requirements/kit.txt
LOCK_CLI := requirements/cli.txt
LOCK_DEV := requirements/dev.txt
LOCK_MOLECULE := requirements/molecule.txt
# A venv whose pip, setuptools and wheel are the locked ones.
define new_venv
$(PYTHON) -m venv $(1)
$(1)/bin/pip install -q --require-hashes -r $(LOCK_BOOTSTRAP)
endef
# The locked third-party packages (hash-checked; the locks agree where they overlap), then this
# project on top of them: an editable install is no single file a hash could check, and needs
# no other dependency (-qq: setuptools' general notice about editable installs is not about
# this tree).
define install_locked
$(1)/bin/pip install -q --require-hashes $(addprefix -r ,$(2))
$(1)/bin/pip install -qq --no-deps --no-build-isolation -e .
endef

$(BIN)/python:
	$(call new_venv,$(VENV))

# The stamps are keyed on the lock files so a dependency change reinstalls.
$(VENV)/.installed-demo: $(LOCK_SERVER) $(LOCK_CLI) pyproject.toml | $(BIN)/python
	$(call install_locked,$(VENV),$(LOCK_SERVER) $(LOCK_CLI))
	touch $@

$(VENV)/.installed-dev: $(LOCK_DEV) pyproject.toml | $(BIN)/python
	$(call install_locked,$(VENV),$(LOCK_DEV))
	touch $@ $(VENV)/.installed-demo

demo: apt-packages $(VENV)/.installed-demo
	DEMO_DIR=$(DEMO_DIR) SZTP_BIN=$(BIN) bash scripts/demo.sh

# Only for `make test` (target-specific: applies to prerequisites): PostgreSQL server binaries;
# Kea (dhcp_redirect validates with kea-dhcp4 -t; the e2e suite runs it); nginx, DHCP clients
# and tcpdump for the e2e suite; podman, runc and debootstrap for the molecule scenarios;
# prometheus for promtool (metrics, alert rules and dashboard queries checked); rsyslog to
# receive the syslog messages; chromium and its driver to test the dashboard in a browser; a
# software TPM behind a resource manager on a private D-Bus bus, with tpm2-tools and OpenSSL's
# tpm2 provider, for the agent's IDevID key in a TPM; BIND's named-checkzone (bind9-utils) to
# check the DNS discovery records the kit renders; radvd, BIND's named and its nsupdate and dig
# (bind9-dnsutils) for the ipv6_ra and dns roles' checks and their named run; podman-compose
# for the compose lab (container/).
TEST_APT_PACKAGES := postgresql kea-dhcp4-server kea-dhcp6-server nginx isc-dhcp-client udhcpc \
	tcpdump iproute2 podman runc debootstrap prometheus rsyslog rsyslog-openssl chromium \
	chromium-driver swtpm tpm2-tools tpm2-openssl tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon softhsm2 \
	bind9-utils radvd bind9 bind9-dnsutils podman-compose
test e2e molecule test-image container: APT_PACKAGES += $(TEST_APT_PACKAGES)
test: apt-packages $(VENV)/.installed-dev lint changelog-lint pytest ansible-test ansible-matrix e2e \
	molecule container

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The fragments, and the releases they went into (changelog.yaml); CHANGELOG.rst is generated
# from those releases (`antsibull-changelog release`) and a test checks that it is current.
changelog-lint: $(VENV)/.installed-dev
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

# The store tests also run against a throwaway PostgreSQL cluster (unix socket only).
# pytest exits 5 when it collects nothing; that is a broken suite here, not a pass.
pytest: $(VENV)/.installed-dev
	@url="$$(bash tests/python/pg_cluster.sh start $(PG_TEST_DIR))"; \
	rc=0; SZTP_TEST_POSTGRES_URL="$$url" $(BIN)/pytest || rc=$$?; \
	bash tests/python/pg_cluster.sh stop $(PG_TEST_DIR); \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# The collection as it ships: ansible-test sanity and units on the built artifact.
ansible-test: $(VENV)/.installed-dev
	bash tests/ansible/run.sh all

# Every other ansible-core minor the collection declares (the dev venv runs 2.19), each on its
# Python from its own lock: sanity and units on all, integration on the oldest and the newest.
ansible-matrix: $(VENV)/.installed-dev
	bash tests/ansible/run-matrix.sh $(ANSIBLE_MATRIX)

# Real DHCP in network namespaces: Kea, dhclient/udhcpc, sztp-server, nginx, the simulator.
e2e: apt-packages $(VENV)/.installed-dev
	@rc=0; $(BIN)/pytest -p no:cacheprovider tests/e2e || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "e2e collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

$(MOLECULE_VENV)/.installed: $(LOCK_MOLECULE) pyproject.toml
	$(call new_venv,$(MOLECULE_VENV))
	$(call install_locked,$(MOLECULE_VENV),$(LOCK_MOLECULE))
	touch $@

test-image: apt-packages
	bash scripts/build-test-image.sh $(TEST_IMAGE)

# The distribution the server role installs on its hosts.
# setuptools stages the sources in build/lib and never deletes a file there: without the clean,
# a module removed or moved in the tree would still ship in the wheel.
wheel: $(VENV)/.installed-dev
	rm -rf $(WHEEL_DIR) build/lib build/bdist.*
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w $(WHEEL_DIR) .

# What a release publishes: the wheel for PyPI and the collection artifact for Galaxy, at the
# one version tests/python/test_release.py holds them to.
dist: $(VENV)/.installed-dev
	PYTHON=$(BIN)/python bash scripts/build-dist.sh dist

# The compose lab (container/): every image built from the test base image, then the lab run
# until its simulated device has onboarded.
container: apt-packages test-image $(VENV)/.installed-dev
	@rc=0; $(BIN)/pytest -p no:cacheprovider tests/container || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "container collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# Each scenario: create, converge, idempotence, check, verify, destroy in systemd containers.
molecule: apt-packages test-image wheel $(MOLECULE_VENV)/.installed
	PATH="$(CURDIR)/$(MOLECULE_VENV)/bin:$$PATH" SZTP_WHEEL="$$(ls $(CURDIR)/$(WHEEL_DIR)/sztp-*.whl)" \
	  bash scripts/run-molecule.sh $(MOLECULE_LANES)

bench: $(VENV)/.installed-dev
	@missing=""; for pkg in wrk gcc libssl-dev softhsm2; do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	$(BIN)/python bench/cli_startup.py --write bench/RESULTS.md
	$(BIN)/python bench/southbound.py --write bench/RESULTS.md
	$(BIN)/python bench/pkcs11_signing.py --write bench/RESULTS.md
	# Without --other NAME=URL --other-devices CSV (a reference server someone started, e.g.
	# sztpd in a throwaway venv), the first-contact section has no comparison row.
	$(BIN)/python bench/first_contact.py --write bench/RESULTS.md
	$(BIN)/python bench/tls_handshake.py --write bench/RESULTS.md
	$(BIN)/python bench/bulk_apply.py --write bench/RESULTS.md
	$(BIN)/python bench/ansible_devices.py --write bench/RESULTS.md
	$(BIN)/python bench/flood.py --write bench/RESULTS.md

# Regenerate the lock files from pyproject.toml (newest versions its ranges allow, for every
# platform, Python 3.11). Each lock is constrained by the one before it, down to the server's,
# so the controller, the demo, the tests, the role tests and the deployed server run the same
# versions.
UV_COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock'
lock: $(VENV)/.installed-dev
	$(UV_COMPILE) $(UV_UPGRADE) requirements/bootstrap.in -o $(LOCK_BOOTSTRAP)
	$(UV_COMPILE) $(UV_UPGRADE) pyproject.toml --extra server -o $(LOCK_SERVER)
	$(UV_COMPILE) $(UV_UPGRADE) pyproject.toml -c $(LOCK_SERVER) -o $(LOCK_KIT)
	cp $(LOCK_KIT) roles/agent/files/agent-requirements.txt  # the agent needs the kit alone
	$(UV_COMPILE) $(UV_UPGRADE) pyproject.toml --extra cli -c $(LOCK_SERVER) -o $(LOCK_CLI)
	$(UV_COMPILE) $(UV_UPGRADE) pyproject.toml --extra server --extra cli --extra dev -c $(LOCK_SERVER) \
	  -c $(LOCK_CLI) -o $(LOCK_DEV)
	$(UV_COMPILE) $(UV_UPGRADE) pyproject.toml --extra cli --extra molecule -c $(LOCK_DEV) -o $(LOCK_MOLECULE)
	for minor in $(ANSIBLE_MATRIX); do \
	  python=$$(sed -n 's/^# python-version: //p' requirements/ansible-$$minor.in); \
	  $(BIN)/uv pip compile --quiet --universal --python-version $$python --generate-hashes \
	    --custom-compile-command 'make lock' $(UV_UPGRADE) requirements/ansible-$$minor.in \
	    pyproject.toml --extra server -c $(LOCK_SERVER) -o requirements/ansible-$$minor.txt; \
	done

# `make lock` keeps what the lock files pin while the ranges allow it; this moves to the newest.
lock-upgrade: UV_UPGRADE := --upgrade
lock-upgrade: lock

# pyproject.toml's lower bounds, tried: the Python suite on the oldest versions they allow.
# Not part of `make test`; run it when a lower bound changes.
LOWEST_VENV := .venv-lowest
lowest: $(VENV)/.installed-dev
	rm -rf $(LOWEST_VENV) build/lowest
	mkdir -p build/lowest
	$(BIN)/uv pip compile --quiet --python-version 3.11 --resolution lowest-direct \
	  pyproject.toml --extra server --extra cli --extra dev -c $(LOCK_BOOTSTRAP) -o build/lowest/requirements.txt
	$(call new_venv,$(LOWEST_VENV))
	$(LOWEST_VENV)/bin/pip install -q -r build/lowest/requirements.txt
	$(LOWEST_VENV)/bin/pip install -qq --no-deps --no-build-isolation -e .
	$(LOWEST_VENV)/bin/pytest -p no:cacheprovider -n 2 tests/python

# docs/cli.md, docs/plugins/, docs/server.md's settings tables and the fleet file's JSON Schema
# are generated from the CLI, the plugin docs, the server's settings and the resource model; the
# test suite fails when they are stale.
docs: $(VENV)/.installed-dev
	$(BIN)/python -m sztp.state.fleet_schema
	$(BIN)/python scripts/gen_server_docs.py
	$(BIN)/python scripts/gen_agent_docs.py
	$(BIN)/python scripts/gen_cli_docs.py
	$(BIN)/python scripts/gen_collection_docs.py

clean:
	rm -rf $(VENV) $(MOLECULE_VENV) $(LOWEST_VENV) build dist tests/output .pytest_cache .ruff_cache
