# The two commands that matter: `make demo` (the lab demo, as root) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps test lint demo bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# ping and ip for probes and the lab, chromium for the report tests; only where missing, as root.
system-deps:
	@sh scripts/system-deps

lint: setup
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/ruff format --check reconciler tests bench
	$(VENV)/bin/mypy reconciler

test: setup system-deps lint
	$(VENV)/bin/pytest -q

demo: setup system-deps
	$(PY) -m reconciler lab demo

bench: setup system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
