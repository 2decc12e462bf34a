# The two commands a newcomer needs; everything else is set up by them.
#   make server   set up, then run a standalone server on 127.0.0.1:2181 (data in ./data)
#   make test     set up (including Apache ZooKeeper for the differential tests), then run
#                 ruff, mypy and the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup server test lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

server: setup
	$(VENV)/bin/corral server --data-dir ./data --address 127.0.0.1 --port 2181

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

test: setup
	scripts/install-zookeeper
	$(MAKE) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
