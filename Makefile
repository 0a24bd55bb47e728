# The two commands that matter: `make demo` (the lab demo, as root) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps test test-sit test-minimum lint demo bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# ping and ip for probes and the lab, chromium for the report tests, user-mode-linux and
# kmod for the sit tests' guest; only where missing, as root.
system-deps:
	@sh scripts/system-deps

lint: setup
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/ruff format --check reconciler tests bench
	$(VENV)/bin/mypy reconciler

# The host suite, and beside it the sit suite in a user-mode Linux guest (scripts/test).
test: setup system-deps lint
	@sh scripts/test

# The tests that touch our dependencies, at the lowest versions pyproject.toml declares
# (constraints/minimum.txt, Debian 12's) in .venv-min; part of `make test`.
test-minimum: setup system-deps
	sh scripts/test-minimum

# The sit (6in4) tests alone, in a user-mode Linux guest: needs user-mode-linux and kmod.
test-sit: setup system-deps
	scripts/uml-guest --timeout 1200 -- sh scripts/sit-suite

demo: setup system-deps
	$(PY) -m reconciler lab demo

bench: setup system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv-min .pytest_cache .mypy_cache .ruff_cache .hypothesis
