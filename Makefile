# The two commands of the README, and a few more for developers.
# Each creates .venv and installs what it needs if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-installed-stamp

.PHONY: run run-independent test bench proto lint docs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

run: $(STAMP)  ## the seed's web-agent example: initialisation, sequential and distributed times
	$(PY) agentnb/examples/dist_main.py

# Before the suite, the Debian packages the tests need (chromium, ...) when root with apt-get and not
# AGENTNB_NO_APT=1; what stays missing is skipped, and the run's last lines say what and why.
test: $(STAMP) $(DOCS_STAMP)  ## the whole test suite (tests/layout/test_docs.py builds the site)
	$(PY) tests/system_requirements.py --install
	$(PY) -m pytest

bench: $(STAMP)  ## the benchmark table
	$(PY) -m agentnb.bench

proto: $(STAMP)  ## regenerate agentnb/_proto from protos/agentnb.proto
	$(PY) protos/generate.py

lint: $(STAMP)  ## ruff, then mypy on agentnb and kernel_ext (settings: [tool.mypy] in pyproject.toml)
	$(VENV)/bin/ruff check agentnb kernel_ext protos tests docs
	$(PY) -m mypy

docs: $(DOCS_STAMP)  ## the documentation site, warnings as errors: open docs/_build/html/index.html
	$(PY) -m sphinx -W --keep-going -q -b html -d docs/_build/doctrees docs docs/_build/html
	@echo "built: open docs/_build/html/index.html"
