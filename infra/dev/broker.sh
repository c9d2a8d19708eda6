#!/usr/bin/env bash
# The local agent's node broker for the dev stack: a system service of the node, like its
# Docker engine, so it runs as a daemon outside the stack's processes. Set up as on a real
# node by `edgecloud-agent broker-setup` (identities, the agent's admin login, listeners on
# loopback and on Docker's default bridge), on port 1884 (the machine may run a broker of
# its own on 1883). Idempotent: a broker already answering is left alone.
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../setup/common.sh"

dir="${EDGECLOUD_VAR_DIR:-$EDGECLOUD_ROOT/var}/broker"
port="${AGENT_BROKER_PORT:-1884}"
state="${AGENT_STATE_DIR:-$EDGECLOUD_ROOT/var/agent}"

listening() { ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; }
if listening && [[ -s "$state/broker-admin.secret" ]]; then
    say "node broker: already listening on $port"
    exit 0
fi

mkdir -p "$dir"
bridge="$(ip -j -4 addr show docker0 | "$EDGECLOUD_ROOT/.venv/bin/python" -c \
    'import json, sys; print(json.load(sys.stdin)[0]["addr_info"][0]["local"])')"
AGENT_STATE_DIR="$state" AGENT_MQTT_URL="mqtt://127.0.0.1:$port" \
    "$EDGECLOUD_ROOT/.venv/bin/python" -m edgecloud_agent broker-setup \
    --config "$dir/mosquitto.conf" --store "$dir/dynamic-security.json" \
    --listen "127.0.0.1:$port" --listen "$bridge:$port" --persistence "$dir"
# Started as root, mosquitto runs as its own user: it keeps its store and messages here.
printf 'pid_file %s\nlog_dest file %s\n' "$dir/mosquitto.pid" "$dir/mosquitto.log" >>"$dir/mosquitto.conf"
chown -R mosquitto:mosquitto "$dir"
mosquitto -d -c "$dir/mosquitto.conf"
for _ in $(seq 50); do listening && break; sleep 0.1; done
listening || die "the node broker did not start listening on $port (see $dir/mosquitto.log)"
say "node broker: listening on 127.0.0.1:$port and $bridge:$port"
