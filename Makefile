# The two commands: `make book` and `make test`. Both create or update .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VENDOR := _vendor
BOOK_FLAGS := -W --keep-going --all
# A second, bare environment holding only what Colab preinstalls that the course needs
# (no cfcourse): the Colab and Kaggle simulations install cfcourse into it from a wheel,
# through each chapter's own first cell.
COLAB_VENV := .venv-colab
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_PACKAGES := torch fastai pandas ipywidgets matplotlib ipykernel
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

$(COLAB_STAMP):
	rm -rf $(COLAB_VENV) && python3 -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install -q --upgrade pip
	$(COLAB_VENV)/bin/python -m pip install -q $(COLAB_PACKAGES)
	touch $@

colab-venv: $(COLAB_STAMP)

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
# book build; the built book in headless Chromium; chapters 0 and 1 in simulated Colab and
# Kaggle environments.
test: venv vendor colab-venv chromium
	CFCOURSE_SCALE=ci $(PYTEST) tests --cov=cfcourse --cov-report=term-missing:skip-covered --cov-fail-under=90
	CFCOURSE_SCALE=ci $(PYTEST) --nbval-lax --nbval-current-env chapters/
	CFCOURSE_SCALE=ci $(VENV)/bin/jupyter-book build . $(BOOK_FLAGS)
	CFCOURSE_SCALE=ci $(PYTEST) -m browser tests/browser
	CFCOURSE_SCALE=ci $(PYTEST) -m simulation tests/simulation

# Speed and accuracy against fastai's pipeline and Surprise, in one run -> benchmarks/RESULTS.md.
bench: venv
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench.py

lint: venv
	$(VENV)/bin/ruff check cfcourse tests

clean:
	rm -rf _build $(VENDOR) .pytest_cache .coverage $(COLAB_VENV)
