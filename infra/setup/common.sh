#!/usr/bin/env bash
# Shared helpers for the infra/setup and infra/dev scripts. Source it; do not run it.

# Repository root, computed from this file's location so callers work from any cwd.
EDGECLOUD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export EDGECLOUD_ROOT

say() { printf '==> %s\n' "$*"; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

# Print the path of a *working* uv binary, or nothing. `command -v` alone is not enough:
# a pyenv shim can exist for uv while the active Python version has no uv, and a freshly
# pip-installed uv may sit in a directory that is not (yet) on PATH.
find_uv() {
    local candidate
    if uv --version >/dev/null 2>&1; then
        command -v uv
        return 0
    fi
    candidate="$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || true)"
    for candidate in "$candidate" /usr/local/bin/uv "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do
        if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" --version >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}
