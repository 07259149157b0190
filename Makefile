# Two commands from a clean clone: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench lock clean

venv: $(STAMP)

# Exactly the versions of constraints.txt (`make lock` refreshes them); torch first, so that
# nothing else can pull a newer one.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Resolve every dependency afresh (torch kept at 2.13.0) and pin the result in constraints.txt,
# cluster/runtime_env.yaml and cluster/kuberay/rayjob.yaml; then `make venv` installs it.
lock:
	$(PYTHON) cluster/lock.py
	rm -f $(STAMP)

demo: $(STAMP)
	$(PY) jobs/demo.py --out out

test: $(STAMP)
	$(PY) -m pytest -q

# Every stage's benchmark into benchmarks/results/bench.json and PNGs (~8 min on 2 cores).
bench: $(STAMP)
	$(PY) benchmarks/suite.py --out benchmarks/results

clean:
	rm -rf out .pytest_cache
