#!/usr/bin/env bash
# A local image registry on 127.0.0.1:5000 (Debian's docker-registry) holding the test image
# as 127.0.0.1:5000/edgecloud/busybox:1.0, so that agents and tests can pull a missing image
# without a public registry. Idempotent: a running registry and a pushed image are left alone.
# Needs dockerd (dockerd.sh) and edgecloud/busybox:latest (images.sh).
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

addr=127.0.0.1:5000
dir="$EDGECLOUD_ROOT/var/registry"
config="$dir/config.yml"
log="$EDGECLOUD_ROOT/var/log/registry.log"
pidfile="$dir/registry.pid"
source_image=edgecloud/busybox:latest
target_image="$addr/edgecloud/busybox:1.0"

registry_up() { curl -fs -m 2 "http://$addr/v2/" >/dev/null 2>&1; }

command -v docker-registry >/dev/null || die "docker-registry not found (run infra/setup/system.sh first)"

# Debian's packaged config listens on every address and wants htpasswd auth: ours serves
# loopback only, without auth (Docker trusts a loopback registry without TLS).
mkdir -p "$dir/data" "$(dirname "$log")"
cat >"$config.tmp" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
CONFIG
mv "$config.tmp" "$config"

if registry_up; then
    say "registry: already answering on $addr"
elif [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "registry: pid $(cat "$pidfile") is starting; waiting for it"
else
    # setsid + nohup + all fds redirected: the registry outlives make/CI and holds no pipe open.
    setsid nohup docker-registry serve "$config" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    say "registry: started, pid $!, log $log"
fi

for _ in $(seq 60); do
    registry_up && break
    sleep 0.5
done
registry_up || die "registry did not answer on $addr within 30 s; see $log"

# The registry's own answer decides, not the local image cache: the data may have been wiped.
if curl -fs -m 5 "http://$addr/v2/edgecloud/busybox/tags/list" | grep -q '"1\.0"'; then
    say "registry: $target_image present"
    exit 0
fi

docker image inspect "$source_image" >/dev/null 2>&1 ||
    die "image $source_image missing (run infra/setup/images.sh first)"
docker tag "$source_image" "$target_image"
docker push "$target_image" >/dev/null
say "registry: pushed $target_image"
