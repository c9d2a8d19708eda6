#!/usr/bin/env bash
# Start the whole dev stack (router, services, local agent) under honcho, in the foreground.
# Run `make up` for the set-up first; Ctrl-C stops everything.
set -euo pipefail

# Repository root from this script's path, so it works from any cwd.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# Development defaults, never overriding what the caller already set
# (e.g. EDGECLOUD_DATABASE_URL pointing at PostgreSQL).
export EDGECLOUD_ENV="${EDGECLOUD_ENV:-development}"
export EDGECLOUD_VAR_DIR="${EDGECLOUD_VAR_DIR:-$ROOT/var}"

mkdir -p var/log "$EDGECLOUD_VAR_DIR"

[[ -x .venv/bin/honcho ]] || { echo "==> ERROR: .venv/bin/honcho missing: run 'make setup'" >&2; exit 1; }
[[ -f infra/Procfile ]] || { echo "==> ERROR: infra/Procfile missing" >&2; exit 1; }

# The local agent's node broker: a node's system service, like its Docker engine.
bash infra/dev/broker.sh

echo "==> starting the dev stack (EDGECLOUD_ENV=$EDGECLOUD_ENV, EDGECLOUD_VAR_DIR=$EDGECLOUD_VAR_DIR)"
exec .venv/bin/honcho -f infra/Procfile -d "$ROOT" start
