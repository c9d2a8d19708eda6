#!/usr/bin/env bash
# Make sure a Docker engine answers on the default socket (/var/run/docker.sock), with
# Docker's own defaults: the docker0 bridge and iptables on, exactly as on a real node (the
# agent's per-tenant networks and firewall build on them; tests must see what tenants get).
# There is no systemd here, so start Debian's dockerd ourselves, detached from this shell.
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

log="$EDGECLOUD_ROOT/var/log/dockerd.log"
pidfile=/var/run/docker.pid   # dockerd's default

docker_up() { docker info >/dev/null 2>&1; }
# An engine started without its bridge or its firewall (an older set-up of ours did that)
# is not what a node runs: it is restarted with the defaults.
docker_default() { docker network inspect bridge >/dev/null 2>&1 && iptables -w -n -L DOCKER-USER >/dev/null 2>&1; }

if docker_up; then
    if docker_default; then
        say "dockerd: already running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
        exit 0
    fi
    say "dockerd: running without its default bridge or iptables; restarting it with the defaults"
    if [[ -s "$pidfile" ]]; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) did not stop within 30 s"
    else
        die "dockerd runs without its defaults and without $pidfile: stop it and run this again"
    fi
fi

command -v dockerd >/dev/null || die "dockerd not found (run infra/setup/system.sh first)"

# An engine that is still starting up (or a live pidfile) must not get a twin.
if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    started="already starting, pid $(cat "$pidfile")"
else
    mkdir -p "$(dirname "$log")"
    # setsid + nohup + all fds redirected: the daemon outlives make/CI and holds no pipe open.
    setsid nohup dockerd >>"$log" 2>&1 </dev/null &
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
