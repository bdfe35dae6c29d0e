# source-commsmining: `make demo` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test unit integration chaos-large bench demo emulator docker-build clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tests,demo]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its test and demo extras

test: $(STAMP)  ## every test: unit, emulator, end-to-end, chaos (CI size)
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest unit_tests

integration: $(STAMP)
	$(PY) -m pytest integration_tests

chaos-large: $(STAMP)  ## the long kill/resume run (hundreds of kills over a large stream)
	CHAOS_SCALE=large $(PY) -m pytest integration_tests/test_chaos.py -v

bench: $(STAMP)  ## benchmarks; writes benchmarks/results.json
	$(PY) benchmarks/run.py --output benchmarks/results.json

demo: $(STAMP)  ## start the emulator, check, sync sources + stream_results into DuckDB via PyAirbyte
	$(PY) -m demo.run

emulator: $(STAMP)  ## run the emulator in the foreground on port 8077
	$(VENV)/bin/commsmining-emulator --port 8077 --scenario demo

docker-build:  ## needs a Docker engine
	docker build -t airbyte/source-commsmining:dev .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .demo
