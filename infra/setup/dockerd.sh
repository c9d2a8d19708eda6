#!/usr/bin/env bash
# Make sure a Docker engine answers on the default socket (/var/run/docker.sock).
# There is no systemd here, so start Debian's dockerd ourselves, detached from this shell.
# --bridge=none --iptables=false: containers get no NAT'd bridge, and the host's firewall
# (used by the testbed) is left alone.
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

log="$EDGECLOUD_ROOT/var/log/dockerd.log"
pidfile=/var/run/docker.pid   # dockerd's default

docker_up() { docker info >/dev/null 2>&1; }

if docker_up; then
    say "dockerd: already running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    exit 0
fi

command -v dockerd >/dev/null || die "dockerd not found (run infra/setup/system.sh first)"

# An engine that is still starting up (or a live pidfile) must not get a twin.
if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    started="already starting, pid $(cat "$pidfile")"
else
    mkdir -p "$(dirname "$log")"
    # setsid + nohup + all fds redirected: the daemon outlives make/CI and holds no pipe open.
    setsid nohup dockerd --bridge=none --iptables=false >>"$log" 2>&1 </dev/null &
    started="started, pid $!"
fi

for _ in $(seq 60); do
    if docker_up; then
        say "dockerd: $started, log $log"
        exit 0
    fi
    sleep 0.5
done
die "dockerd did not answer within 30 s; see $log"
