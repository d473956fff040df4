# Set-up is two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?= $(or $(RELEVO_DATA_DIR),$(wildcard ../shared/datasets))

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build in pyproject.toml; a looser pin pulls a CUDA build.
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/relevo demo $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	for b in ann ingest freshness serve_latency; do $(PY) -m benchmarks.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .relevo .pytest_cache
