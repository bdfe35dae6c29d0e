# source-commsmining: `make demo` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The benchmarks measure the connector installed as the Docker image installs it: without the
# test and demo extras (PyAirbyte pulls in boto3, which requests-cache then imports at start-up).
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
# Airbyte's connector QA checks (airbyte-internal-ops, ~860 MB with its dependencies): a venv of their
# own, built only by `make qa`, never by `make test`. Pinned: the checks change between releases.
CDK_LATEST_VENV := .venv-cdk-latest
QA_VENV := .venv-qa
QA_STAMP := $(QA_VENV)/.installed
AIRBYTE_INTERNAL_OPS := airbyte-internal-ops==0.132.0

.PHONY: install test test-cdk-latest cdk-latest-venv unit integration chaos-large properties-large bench bench-layers demo emulator docker-build qa clean

# The emulator is a distribution of its own (emulator/pyproject.toml): installed here for the tests,
# the demo and the benchmarks, never by `pip install .` at the root.
# Byte-compiled at install (pip's default), not on first import: where PYTHONDONTWRITEBYTECODE is
# set (as on this project's machines), nothing compiled on import is kept, and every connector
# process of the suite would compile the CDK again.
$(STAMP): setup.py emulator/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tests,demo]' -e ./emulator
	touch $(STAMP)

$(BENCH_STAMP): setup.py
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e .
	touch $(BENCH_STAMP)

$(QA_STAMP):
	test -x $(QA_VENV)/bin/python || $(PYTHON) -m venv $(QA_VENV)
	$(QA_VENV)/bin/python -m pip install --quiet '$(AIRBYTE_INTERNAL_OPS)'
	touch $(QA_STAMP)

install: $(STAMP)  ## create .venv and install the package with its test and demo extras

# Four pytest-xdist workers, even on two cores: many tests wait on subprocesses, servers and kills, and
# a fourth worker fills those waits (measured on 2 cores: 327 s with two workers, 298 s with four).
# Tests that share a fixed port or server are grouped (xdist_group; pytest is kept below 9.2, where
# groups are silently ignored). The long tests start first (the runs_long marker, conftest.py), so no
# long test starts last and ends the run alone. Speed goals live in `make bench`, never in a test's
# time bound.
test: $(STAMP)  ## every test: unit, emulator, end-to-end, chaos (CI size), then the CDK contract on the newest CDK 7.x
	$(PY) -m pytest -q -n 4 --dist loadgroup
	$(MAKE) test-cdk-latest

# The CDK contract tests (and one end-to-end pass over every verb) against the newest airbyte-cdk 7.x
# the pin admits (setup.py), so a CDK release that breaks a contract fails `make test`. When .venv
# already holds that newest 7.x (a fresh `make install` does), the run above was on it: nothing to
# redo. Otherwise a venv of its own is upgraded to it. If PyPI cannot be asked, the venv is built
# anyway (and fails as loudly as before).
CDK_PIN := airbyte-cdk>=7.39.1,<8
CDK_LATEST_TESTS := unit_tests/test_cdk_contract.py integration_tests/test_e2e.py
test-cdk-latest: $(STAMP)  ## CDK contract tests against the newest airbyte-cdk 7.x (skipped when .venv has it)
	@installed=$$($(PY) -c "from importlib.metadata import version; print(version('airbyte-cdk'))"); \
	if report=$$($(PY) -m pip install --quiet --dry-run --upgrade --no-deps --report - '$(CDK_PIN)' 2>/dev/null) && \
	   newer=$$(echo "$$report" | $(PY) -c "import json, sys; print(' '.join(i['metadata']['version'] for i in json.load(sys.stdin)['install']))") && \
	   [ -z "$$newer" ]; then \
		echo "test-cdk-latest: .venv has airbyte-cdk $$installed, the newest 7.x: the contract tests above ran on it"; \
	else \
		$(MAKE) cdk-latest-venv && $(CDK_LATEST_VENV)/bin/python -m pytest -q $(CDK_LATEST_TESTS); \
	fi

cdk-latest-venv:
	test -x $(CDK_LATEST_VENV)/bin/python || $(PYTHON) -m venv $(CDK_LATEST_VENV)
	$(CDK_LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CDK_LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy only-if-needed \
		-e '.[tests]' -e ./emulator '$(CDK_PIN)'
	$(CDK_LATEST_VENV)/bin/python -c "from importlib.metadata import version; print('airbyte-cdk', version('airbyte-cdk'))"

unit: $(STAMP)
	$(PY) -m pytest unit_tests

integration: $(STAMP)
	$(PY) -m pytest integration_tests

chaos-large: $(STAMP)  ## the long kill/resume runs (hundreds of kills: over a large stream; end to end into DuckDB and PostgreSQL)
	CHAOS_SCALE=large $(PY) -m pytest integration_tests/test_chaos.py integration_tests/test_exactly_once.py -v

properties-large: $(STAMP)  ## the property tests of valid bodies at their full example counts (`make test` runs 30% of them), and 200 fuzzed /results bodies (30)
	PROPERTIES_SCALE=large FUZZ_EXAMPLES=200 $(PY) -m pytest unit_tests/test_properties.py unit_tests/test_fuzz_results.py -v

# The measuring devices (valgrind's counts, the stripped connector: they patch internals that may move) are
# checked first, at tiny sizes, by the tests marked bench_devices (not part of `make test`).
BENCH_DEVICES := $(PY) -m pytest -q -m bench_devices integration_tests/test_benchmark_smoke.py

bench: $(STAMP) $(BENCH_STAMP)  ## benchmarks; writes benchmarks/results.json
	$(BENCH_DEVICES)
	$(PY) benchmarks/run.py --connector $(BENCH_VENV)/bin/source-commsmining --output benchmarks/results.json

bench-layers: $(STAMP) $(BENCH_STAMP)  ## what the layers the connector keeps cost (wall time and valgrind instructions; not goals); writes benchmarks/results-layers.json
	$(BENCH_DEVICES)
	$(PY) benchmarks/run.py --connector $(BENCH_VENV)/bin/source-commsmining --output benchmarks/results-layers.json --only layers,instructions --throughput-comments 50000 --repeats 5

demo: $(STAMP)  ## start the emulator, check, sync sources + stream_results (+ flat tables) and the dataset history into DuckDB via PyAirbyte (AUTH=oauth: as an External Application)
	DEMO_AUTH=$(or $(AUTH),$(DEMO_AUTH),api_token) $(PY) -m demo.run

emulator: $(STAMP)  ## run the emulator in the foreground on port 8077
	$(VENV)/bin/commsmining-emulator --port 8077 --scenario demo

qa: $(QA_STAMP)  ## Airbyte's connector QA checks, offline, on a temporary monorepo copy (qa/run_qa.py)
	$(QA_VENV)/bin/python qa/run_qa.py

docker-build:  ## needs a Docker engine
	docker build -t airbyte/source-commsmining:dev .

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(QA_VENV) $(CDK_LATEST_VENV) *.egg-info .pytest_cache .demo
