# The two commands: `make run` and `make test`. See README.md.
PORT ?= 8000
BENCH ?=

.PHONY: run test bench services stop status lint format

run:  ## start the control plane, console and a local agent on embedded defaults (SQLite)
	@PORT=$(PORT) bash scripts/run.sh

test:  ## install what the tests need, start every real service, run the whole suite
	@bash scripts/test.sh

bench:  ## run the side-by-side benchmarks; BENCH=name runs one
	@bash scripts/bench.sh $(BENCH)

services:  ## start (installing if needed) every local real service
	@bash scripts/services.sh up

stop:  ## stop every local real service
	@bash scripts/services.sh down

status:
	@bash scripts/services.sh status

lint:  ## ruff (with bandit's S rules), lint-imports, mypy, shellcheck and pip-audit over constraints.txt
	@bash scripts/install-python.sh dev && bash scripts/lint.sh
	@bash scripts/audit.sh

format:
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .
