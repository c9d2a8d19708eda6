#!/usr/bin/env bash
# Write secrets.env for kustomization.yaml with fresh random secrets:
#   infra/k8s/make-secrets.sh 'postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB' [OUT]
# OUT defaults to secrets.env beside this script; an existing file is never overwritten.
# The keys are those of secrets.env.example. Prints the bootstrap operator's password.
set -euo pipefail

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 DATABASE_URL [OUT]" >&2; exit 2; }
database_url=$1
out=${2:-"$(dirname "${BASH_SOURCE[0]}")/secrets.env"}
[[ -e "$out" ]] && { echo "$out exists: not overwritten" >&2; exit 1; }

# 48 random bytes, URL-safe: about 62 characters.
random() { head -c 48 /dev/urandom | base64 | tr -d '/+=\n'; }

admin_password="$(random)"
umask 077
{
    echo "EDGECLOUD_DATABASE_URL=$database_url"
    echo "EDGECLOUD_INTERNAL_SECRET=$(random)"
    echo "EDGECLOUD_ADMIN_PASSWORD=$admin_password"
    for service in GATEWAY REGISTRY ORCHESTRATOR STORAGE MIGRATION_SCHEDULER; do
        echo "${service}_WAMP_TICKET=$(random)"
    done
} > "$out"
echo "wrote $out; operator login: admin / $admin_password" >&2
