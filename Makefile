# Everything runs from a local virtualenv that these targets create and keep in step with the
# pinned requirements: `make run` needs only the runtime, `make test` adds training and test tools.
# Debian's python3.11, when it can make virtualenvs, before whatever python3.11 is first on PATH: it is
# built with PGO and LTO and links libpython statically, so Python code runs about a quarter faster
# than on a default pyenv build (the event loops' CPU per request is about 6 % lower; `make bench`).
# The Docker image runs an optimized build too. Any Python 3.11 works: `make PYTHON=...`.
# (`?=` expands only where it is used: the probe runs when a venv is made, not on every `make`.)
SYSTEM_PYTHON = $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null && echo /usr/bin/python3.11)
PYTHON ?= $(or $(SYSTEM_PYTHON),$(shell command -v python3.11 || command -v python3))
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint chromium data train bench docker-check clean bulk-install

run: $(VENV)/.runtime-installed
	$(BIN)/python -m service

test: $(VENV)/.dev-installed chromium
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

# Debian's chromium for the browser tests, installed when missing and run as root.
chromium:
	@bash scripts/ensure-chromium.sh

# The IMDB data for `make train` and `make bench` (training/data.py): the folder IMDB_DATA_DIR names, else the
# first of data/ and ../shared/data that has the files. `make data` fills data/ (or IMDB_DATA_DIR): copied from
# ../shared/data when it is there, else downloaded and checked against the published md5. It needs only the
# standard library, so it runs on $(PYTHON), without the virtualenv.
data:
	$(PYTHON) -m training.fetch_data

train: $(VENV)/.dev-installed
	$(BIN)/python -m training --out models/

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

docker-check:
	bash .ci/docker-check

# Ray Data for bulk scoring, `python -m bulk` (README, "Bulk scoring on Ray"): the runtime plus requirements-bulk.txt,
# never the Docker image. `make test` has it too (requirements-dev.txt includes requirements-bulk.txt).
bulk-install: $(VENV)/.bulk-installed

$(VENV)/.bulk-installed: requirements.txt requirements-bulk.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements-bulk.txt
	touch $@ $(VENV)/.runtime-installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-train.txt requirements-dev.txt requirements-bulk.txt \
                     deploy/requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

clean:
	rm -rf $(VENV) .pytest_cache
