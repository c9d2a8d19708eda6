#!/usr/bin/env bash
# Python environments:
#   .venv         the uv workspace (all members + the dev group: pytest, ruff, mypy, honcho)
#   .venv-router  Crossbar.io alone: it pins idna<2.6, which clashes with httpx/anyio.
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$EDGECLOUD_ROOT"

uv="$(find_uv)" || die "uv not found (run infra/setup/system.sh first)"
# Only PyPI is reachable: never let uv try to download a Python build; use the machine's 3.11.
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"

if [[ -f uv.lock ]]; then
    say "syncing .venv from uv.lock"
    "$uv" sync --frozen --quiet
else
    say "syncing .venv (no uv.lock yet: resolving)"
    "$uv" sync --quiet
fi

if [[ ! -x .venv-router/bin/python ]]; then
    say "creating .venv-router"
    "$uv" venv --quiet --python python3.11 .venv-router
fi
# numpy<2: crossbar's bjdata codec is built against numpy 1 and prints an _ARRAY_API
# traceback at every start under numpy 2 (harmless, but it buries real errors).
ROUTER_REQUIREMENTS=('crossbar==26.10.1' 'numpy<2')
if [[ ! -x .venv-router/bin/crossbar ]] ||
    ! .venv-router/bin/python -c 'import numpy, sys; sys.exit(int(numpy.__version__.split(".")[0]) >= 2)' 2>/dev/null; then
    say "installing ${ROUTER_REQUIREMENTS[*]} into .venv-router"
    "$uv" pip install --quiet --python .venv-router/bin/python "${ROUTER_REQUIREMENTS[@]}"
fi
say "venvs: .venv ($(.venv/bin/python --version)), .venv-router (crossbar $(
    .venv-router/bin/python -c 'import importlib.metadata as m; print(m.version("crossbar"))'))"
