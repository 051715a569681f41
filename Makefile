# Everything runs from a local virtualenv that these targets create and keep in step with the
# pinned requirements: `make run` needs only the runtime, `make test` adds training and test tools.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: run test train bench docker-check clean

run: $(VENV)/.runtime-installed
	$(BIN)/python -m service

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

train: $(VENV)/.dev-installed
	$(BIN)/python -m training --data $(DATA)/aclImdb_v1_labeled.tar.gz --word-index $(DATA)/imdb_word_index.json --out models/

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

docker-check:
	bash .ci/docker-check

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-train.txt requirements-dev.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

clean:
	rm -rf $(VENV) .pytest_cache
