# The two commands: `make book` and `make test`. Both create or update .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VENDOR := _vendor
BOOK_FLAGS := -W --keep-going --all
# The simulated Colab (tests/simulation/), all of it git-ignored under .venv-colab/:
# - env/: Colab's Python (from pyenv) with Colab's versions of the packages the course
#   imports, as tests/data/colab.txt records them, and no cfcourse;
# - wheelhouse/: what chapters' first cells install besides cfcourse (pyspark for chapter 10),
#   at Colab's versions, so the simulation installs them with pip barred from every index.
SIM := .venv-colab
COLAB_VENV := $(SIM)/env
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_LIST := tests/data/colab.txt
COLAB_PYTHON_VERSION := $(shell sed -n 's/^\# python: *//p' $(COLAB_LIST))
# The interpreter: pyenv's Python of that version, unless `make colab-venv COLAB_PYTHON=...`.
COLAB_PYTHON ?= $(shell p=$$(pyenv prefix $(COLAB_PYTHON_VERSION) 2>/dev/null) && echo $$p/bin/python3)
# What the course imports (cfcourse and the chapters), installed at Colab's versions ...
COLAB_PACKAGES := torch fastai numpy pandas scipy matplotlib ipywidgets tqdm numba
# ... plus what Colab's list does not record: the torchvision built for torch 2.11 (fastai
# imports it) and the kernel.
COLAB_EXTRAS := "torchvision==0.26.*" ipykernel
WHEELHOUSE := $(SIM)/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.filled
FIRST_CELL_PACKAGES := pyspark
# ... and what Colab does not preinstall at all (chapters 11 and 12), at the versions measured here.
FIRST_CELL_EXTRAS := implicit==0.7.3 faiss-cpu==1.15.1
empty :=
space := $(empty) $(empty)
PYTEST := $(VENV)/bin/pytest -p no:cacheprovider
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: book test venv vendor colab-venv chromium bench lint clean

# Everything a reader, a learner and CI need, including the offline ML-100k copy
# (recbole's wheel ships it; --no-deps keeps its heavy dependencies out).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[book,test]"
	$(PY) -m pip install -q --no-deps recbole==1.2.1
	touch $(STAMP)

venv: $(STAMP)

$(COLAB_STAMP): $(COLAB_LIST)
	@test -x "$(COLAB_PYTHON)" || { echo "make: the simulated Colab needs Python \
	$(COLAB_PYTHON_VERSION) (Colab's, from $(COLAB_LIST)). Install it with \
	'pyenv install $(COLAB_PYTHON_VERSION)', or name an interpreter: \
	make colab-venv COLAB_PYTHON=/path/to/python$(COLAB_PYTHON_VERSION)" >&2; exit 1; }
	@"$(COLAB_PYTHON)" -c 'import sys; v = "%d.%d" % sys.version_info[:2]; \
	sys.exit(0 if v == "$(COLAB_PYTHON_VERSION)" else "$(COLAB_PYTHON) is Python " + v + \
	", Colab runs $(COLAB_PYTHON_VERSION)")'
	rm -rf $(COLAB_VENV) && "$(COLAB_PYTHON)" -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install -q --upgrade pip
	grep -E '^($(subst $(space),|,$(COLAB_PACKAGES)))==' $(COLAB_LIST) > $(COLAB_VENV)/colab-pins.txt
	@test $$(wc -l < $(COLAB_VENV)/colab-pins.txt) -eq $(words $(COLAB_PACKAGES)) || \
	{ echo "make: $(COLAB_LIST) lacks a version for one of: $(COLAB_PACKAGES)" >&2; exit 1; }
	$(COLAB_VENV)/bin/python -m pip install -q -r $(COLAB_VENV)/colab-pins.txt $(COLAB_EXTRAS)
	touch $@

# pyspark is an sdist on PyPI: `pip wheel` builds its wheel once (and fetches py4j's).
$(WHEELHOUSE_STAMP): $(COLAB_LIST) Makefile | $(COLAB_STAMP)
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(COLAB_VENV)/bin/python -m pip wheel -q -w $(WHEELHOUSE) \
	  $$(grep -E '^($(subst $(space),|,$(FIRST_CELL_PACKAGES)))==' $(COLAB_LIST)) \
	  $(FIRST_CELL_EXTRAS)
	touch $@

colab-venv: $(COLAB_STAMP) $(WHEELHOUSE_STAMP)

# The browser tests drive Debian's chromium (Playwright's own browser download is not used).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

# Third-party JavaScript comes from npm at build time and is never committed.
$(VENDOR)/.stamp: Makefile
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/.pack
	cd $(VENDOR)/.pack && npm pack --silent mathjax@3.2.2 requirejs@2.3.8 @jupyter-widgets/html-manager@1.0.15 >/dev/null
	tar xzf $(VENDOR)/.pack/mathjax-3.2.2.tgz -C $(VENDOR)/.pack && mkdir -p $(VENDOR)/mathjax && mv $(VENDOR)/.pack/package/es5 $(VENDOR)/mathjax/ && rm -rf $(VENDOR)/.pack/package
	tar xzf $(VENDOR)/.pack/requirejs-2.3.8.tgz -C $(VENDOR)/.pack && mv $(VENDOR)/.pack/package/require.js $(VENDOR)/ && rm -rf $(VENDOR)/.pack/package
	tar xzf $(VENDOR)/.pack/jupyter-widgets-html-manager-1.0.15.tgz -C $(VENDOR)/.pack && mkdir -p $(VENDOR)/html-manager && mv $(VENDOR)/.pack/package/dist $(VENDOR)/html-manager/ && rm -rf $(VENDOR)/.pack
	touch $@

vendor: $(VENDOR)/.stamp

# The HTML book, every notebook executed (CPU scale unless CFCOURSE_SCALE says otherwise).
book: venv vendor
	$(VENV)/bin/jupyter-book build . $(BOOK_FLAGS)
	@echo "Open $(CURDIR)/_build/html/index.html"

# Everything at CI scale: package tests with coverage; nbval over every chapter; the strict
# book build (the only one: .ci/run builds nothing else); the built book in headless
# Chromium; every chapter of _toc.yml in the simulated Colab, and as on Kaggle with the data
# attached (tests/simulation/).
test: venv vendor colab-venv chromium
	CFCOURSE_SCALE=ci $(PYTEST) tests --cov=cfcourse --cov-report=term-missing:skip-covered --cov-fail-under=90
	CFCOURSE_SCALE=ci $(PYTEST) --nbval-lax --nbval-current-env chapters/
	CFCOURSE_SCALE=ci $(VENV)/bin/jupyter-book build . $(BOOK_FLAGS)
	CFCOURSE_SCALE=ci $(PYTEST) -m browser tests/browser
	CFCOURSE_SCALE=ci $(PYTEST) -m simulation tests/simulation --durations=0

# Speed and accuracy against fastai's pipeline and Surprise, in one run -> benchmarks/RESULTS.md.
bench: venv
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench.py

lint: venv
	$(VENV)/bin/ruff check cfcourse tests

clean:
	rm -rf _build $(VENDOR) .pytest_cache .coverage $(SIM)
