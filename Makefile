# Set-up is two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
DATA_DIR ?= $(or $(RELEVO_DATA_DIR),$(wildcard ../shared/datasets))

.PHONY: install browser demo test bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build in pyproject.toml; a looser pin pulls a CUDA build.
	# llama-cpp-python builds from source (~8 min on 2 cores, then pip's wheel cache): no
	# native tuning, since these CPUs advertise AMX instructions that trap at run time.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/relevo demo $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

# The dashboard's browser test drives Debian's chromium through chromedriver (no browser
# download at run time). Installing them needs root (apt-get); CI runs as root.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "chromium / chromium-driver missing: run 'make browser' as root"; exit 1; fi; \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test: $(STAMP) browser
	$(PY) -m pytest

bench: $(STAMP)
	for b in ann ingest freshness serve_latency emotion bandit synthetic_ctr delayed_feedback ope_obd erasure tiers llm_path scale soak; do $(PY) -m benchmarks.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .relevo .pytest_cache
