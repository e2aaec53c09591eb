# dlqadmin: `make demo` runs the dashboard with live failing traffic; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE := dlqadmin.settings

# Test-suite environment (real services on this machine; see docs/development.md).
TEST_ENV := DEBUG=false SECURE_SSL_REDIRECT=false SECRET_KEY=make-test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz \
	DLQADMIN_ENCRYPTION_KEY=8Fq1v2o0m0vXH1bFz2C8CkQ6q0m0n7cV9wQe3rT5y7U= \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/dlqadmin_$$$$} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/0} \
	AMQP_URL=$${AMQP_URL:-amqp://127.0.0.1:5672/} \
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-127.0.0.1:9092} \
	NATS_URL=$${NATS_URL:-nats://127.0.0.1:4222}

.PHONY: venv demo test test-fast lint format bench services clean lock

# Installs exactly the lock: requirements-dev.txt names the packages, requirements-dev.lock pins every
# transitive dependency (a constraint pip may not leave), and `pip check` proves the set complete.
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements.lock requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c requirements-dev.lock
	$(PY) -m pip check
	touch $@

venv: $(VENV)/.installed

services: venv
	bash scripts/ensure-services.sh

demo: venv
	$(PY) scripts/demo.py

test: venv services
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# Development lane: the suite without the browser and fault tests (tests/browser/, tests/faults/).
# CI runs the full `make test`.
FAST_MARKERS := not browser and not fault
test-fast: venv services
	$(TEST_ENV) $(PY) -m pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

# Benchmarks against the raw broker clients (docs/benchmarks.md); BENCH_N etc. in bench/config.py.
bench: venv services
	$(TEST_ENV) $(PY) -m bench

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Regenerates requirements.lock (runtime, the image) and requirements-dev.lock (runtime + dev, the
# venv) with uv, keeping every existing pin; LOCK_ARGS="--upgrade-package NAME" moves one package.
UV_VERSION := 0.13.9
UV := var/uv/bin/uv
lock:
	test -x $(UV) || ($(PYTHON) -m venv var/uv && var/uv/bin/pip install --quiet uv==$(UV_VERSION))
	$(UV) pip compile requirements.txt -o requirements.lock --python $(PYTHON) \
		--custom-compile-command "make lock" --quiet $(LOCK_ARGS)
	$(UV) pip compile requirements-dev.txt -c requirements.lock -o requirements-dev.lock --python $(PYTHON) \
		--custom-compile-command "make lock" --quiet $(LOCK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
