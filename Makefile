# SiteWatch: `make run` brings the product up on the lab, `make test` runs every test.
# Both create .venv and install what they need, Debian packages included when run as root.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
APT_PACKAGES := iproute2 snmp snmpd sip-tester fping systemd chromium postgresql libpq5
INVENTORY ?= config/inventory.yaml
# The collector's database for `make run`: sqlite (a file) or postgres (a local server, see
# `python -m tests.lab run --help`).
DB ?= sqlite
PYTEST_ARGS ?=

.PHONY: run test lint typecheck pytest fuzz soak bench lab-down system-packages venv clean

run: venv system-packages
	$(PY) -m tests.lab run --inventory $(INVENTORY) --db $(DB)

test: venv system-packages lint typecheck pytest

pytest: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The fuzz suite at twenty times its CI size, randomised: new cases on every run (tests/fuzz).
fuzz: venv
	SITEWATCH_FUZZ_SCALE=20 $(PY) -m pytest tests/fuzz $(PYTEST_ARGS)

# The lab and real-process tests that once failed now and then, SOAK_RUNS times over with the
# machine's other core kept busy (as on a collector VM doing a backup); stops at the first failure.
# Then the failover scenarios of tests/test_lab_failover.py, each repeated SOAK_RUNS times, and
# the two collectors of tests/test_lab_collectors_ha.py SOAK_RUNS times.
SOAK_RUNS ?= 5
SOAK_TESTS ?= tests/test_lab_pipeline.py tests/test_lab_incidents.py tests/test_restart.py tests/test_pipeline.py \
	tests/test_collectors_ha.py
soak: venv system-packages
	@$(PY) -c 'while True: pass' & busy=$$!; trap "kill $$busy" EXIT; \
	for run in $$(seq $(SOAK_RUNS)); do \
		echo "soak run $$run of $(SOAK_RUNS)"; \
		CI=true $(PY) -m pytest -q $(SOAK_TESTS) $(PYTEST_ARGS) || exit 1; \
	done; \
	kill $$busy; trap - EXIT; \
	echo "soak: the failover scenarios, $(SOAK_RUNS) times each (they keep a core busy themselves)"; \
	CI=true SITEWATCH_FAILOVER_RUNS=$(SOAK_RUNS) $(PY) -m pytest -q tests/test_lab_failover.py $(PYTEST_ARGS) \
		|| exit 1; \
	for run in $$(seq $(SOAK_RUNS)); do \
		echo "soak: two collectors on the lab, run $$run of $(SOAK_RUNS) (a core kept busy by the test)"; \
		CI=true $(PY) -m pytest -q tests/test_lab_collectors_ha.py $(PYTEST_ARGS) || exit 1; \
	done

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

# Speed beside peer tools measured in the same run (root: the ICMP bench builds a namespace,
# the agent bench pings through raw sockets, the detection bench cuts links in the lab).
bench: venv system-packages
	$(PY) -m bench.icmp_bench
	$(PY) -m bench.snmp_bench
	$(PY) -m bench.ingest_bench
	$(PY) -m bench.failover_bench
	$(PY) -m bench.agent_bench
	$(PY) -m bench.correlation_bench
	$(PY) -m bench.report_bench
	$(PY) -m bench.detection_bench
	$(PY) -m bench.abuse_bench

# Remove any lab left behind by a run that was killed before it could clean up.
lab-down: venv
	$(PY) -m tests.lab down

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "SiteWatch needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

# The lab needs iproute2, net-snmp's tools and agent (snmpd answers as its routers), sipp and
# fping; the browser tests chromium; the PostgreSQL tests and `make run DB=postgres` a
# PostgreSQL server (postgresql) and its client library (libpq5). As root,
# install what is missing; otherwise say what is missing (the lab, browser and PostgreSQL tests
# then skip, except under CI where they fail).
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "not root, so not installing:$$missing (the tests that need them will be skipped)"; \
	fi

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
