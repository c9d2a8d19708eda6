# edgecloud: every entry point is a target here; the real work lives in infra/ scripts, which
# are idempotent, so running a target twice is cheap. See ARCHITECTURE.md, section 6.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SETUP := infra/setup
PYTEST_ARGS ?=

.PHONY: help setup setup-test venvs up test lint clean

help:
	@echo "make setup       install system packages, start dockerd, build images, create venvs"
	@echo "make setup-test  setup + PostgreSQL on 127.0.0.1:5432 + Chromium + the testbed's tools"
	@echo "make up          setup + run the dev stack (router, services, local agent)"
	@echo "make test        setup-test + the test suite (PYTEST_ARGS='...' to pass options)"
	@echo "make lint        ruff check, ruff format --check, mypy"
	@echo "make clean       remove var/ (runtime data and logs)"

# Scripts are run through bash so they work even where the executable bit got lost.
setup:
	bash $(SETUP)/system.sh
	bash $(SETUP)/dockerd.sh
	bash $(SETUP)/images.sh
	bash $(SETUP)/registry.sh
	bash $(SETUP)/venvs.sh
	bash $(SETUP)/assets.sh

setup-test: setup
	bash $(SETUP)/system.sh --postgres --browser --testbed

# Only the Python environments (what lint needs); uv must already be installed.
venvs:
	bash $(SETUP)/venvs.sh

up: setup
	bash infra/dev/up.sh

# pytest's exit status fails the target (make itself then exits 2). The slowest tests are
# listed at the end: the suite has a 30-minute budget on two cores.
test: setup-test
	.venv/bin/pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

# Run all three checks and report every failure, not just the first.
lint: venvs
	@rc=0; \
	.venv/bin/ruff check . || rc=1; \
	.venv/bin/ruff format --check . || rc=1; \
	.venv/bin/mypy libs services edge-agent cli || rc=1; \
	exit $$rc

clean:
	rm -rf var/
