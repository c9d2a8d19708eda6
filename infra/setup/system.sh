#!/usr/bin/env bash
# System packages and services the project needs (Debian 12, run as root, no stdin).
# Idempotent: every step checks first and does nothing when already done.
#   system.sh             Docker engine, Mosquitto, busybox-static, docker-registry, uv
#   system.sh --postgres  ... plus a PostgreSQL server answering on 127.0.0.1:5432 (tests)
#   system.sh --browser   ... plus Debian's Chromium, which the dashboard's browser tests drive
#   system.sh --testbed   ... plus what the multi-node testbed (infra/testbed) shells out to
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

want_postgres=0
want_browser=0
want_testbed=0
for arg in "$@"; do
    case "$arg" in
        --postgres) want_postgres=1 ;;
        --browser) want_browser=1 ;;
        --testbed) want_testbed=1 ;;
        *) die "unknown argument: $arg (usage: system.sh [--postgres] [--browser] [--testbed])" ;;
    esac
done

[[ $EUID -eq 0 ]] || die "system.sh must run as root"
export DEBIAN_FRONTEND=noninteractive

# --- apt packages --------------------------------------------------------------------------
is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

apt_updated=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    # Refresh the package index only when something actually has to be installed.
    if ((!apt_updated)); then
        apt-get update -qq
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

base_pkgs=(docker.io mosquitto busybox-static docker-registry iproute2 procps)
((want_postgres)) && base_pkgs+=(postgresql)
# Playwright's own browser download is not reachable here: the tests drive Debian's build.
((want_browser)) && base_pkgs+=(chromium fonts-dejavu-core)
# The testbed: ip/tc (iproute2, above), iptables with the statistic match, nsenter
# (util-linux, always there); ping lets an operator check a link by hand.
((want_testbed)) && base_pkgs+=(iptables iputils-ping)
apt_install "${base_pkgs[@]}"
# npm vendors the gateway's front-end assets; a machine may have it from elsewhere.
command -v npm >/dev/null || apt_install npm

# --- uv --------------------------------------------------------------------------------------
if ! uv_bin="$(find_uv)"; then
    say "installing uv with pip"
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    # Debian's own python3 is "externally managed" (PEP 668); uv is one static binary with no
    # dependencies, so overriding the guard is harmless. Try the polite way first.
    python3 -m pip install --quiet uv ||
        python3 -m pip install --quiet --break-system-packages uv
    uv_bin="$(find_uv)" || die "uv was installed by pip but cannot be found"
fi
# Later steps run in new shells: if uv landed outside PATH (pyenv shims not rehashed, a
# user scheme, ...), link it into /usr/local/bin, which is on root's PATH.
if ! uv --version >/dev/null 2>&1; then
    ln -sf "$uv_bin" /usr/local/bin/uv
    say "uv: linked /usr/local/bin/uv -> $uv_bin"
    uv_bin=/usr/local/bin/uv
fi
say "uv: $uv_bin ($("$uv_bin" --version))"

# --- Mosquitto (the node's own broker; later features need it) -------------------------------
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

if ! listening 1883; then
    say "starting mosquitto"
    # Debian's init script normally creates the pid directory; do it ourselves.
    install -d -o mosquitto -g mosquitto /run/mosquitto
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
    for _ in $(seq 50); do listening 1883 && break; sleep 0.1; done
    listening 1883 || die "mosquitto did not start listening on 1883 (see /var/log/mosquitto/)"
fi
say "mosquitto: listening on 1883"

# --- PostgreSQL ------------------------------------------------------------------------------
if ((want_postgres)); then
    pg_answers() { pg_isready -q -h 127.0.0.1 -p 5432; }
    # Trust means: connects over TCP with no password at all (no pgpass, no PGPASSWORD).
    pg_trusts() {
        env -u PGPASSWORD PGPASSFILE=/dev/null \
            psql -X -w -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc 'select 1' \
            >/dev/null 2>&1
    }
    # pg_ctlcluster would hand over to systemctl when systemd runs; we manage it directly
    # (works as root: pg_ctlcluster switches to the cluster owner itself).
    pg_ctl() { pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" "$@"; }

    # The cluster on port 5432 if there is one, else the newest installed version's "main".
    pg_ver="" pg_name="" pg_status=""
    read -r pg_ver pg_name pg_status < <(
        pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 {print $1, $2, $4; exit}'
    ) || true
    if [[ -z "$pg_ver" ]]; then
        pg_ver="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1 || true)"
        pg_name=main
        [[ -n "$pg_ver" ]] || die "postgresql is installed but no server version was found"
        if [[ ! -d "/etc/postgresql/$pg_ver/$pg_name" ]]; then
            say "creating PostgreSQL cluster $pg_ver/$pg_name on port 5432"
            pg_createcluster "$pg_ver" "$pg_name" --port 5432 >/dev/null
        fi
        pg_status=down
    fi

    if ! pg_answers && [[ "$pg_status" != online ]]; then
        say "starting PostgreSQL $pg_ver/$pg_name"
        pg_ctl start
    fi
    for _ in $(seq 60); do pg_answers && break; sleep 0.5; done
    pg_answers || die "PostgreSQL does not answer on 127.0.0.1:5432 (see /var/log/postgresql/)"

    if ! pg_trusts; then
        # First matching line wins in pg_hba.conf, so the trust rule goes on top.
        hba="/etc/postgresql/$pg_ver/$pg_name/pg_hba.conf"
        [[ -f "$hba" ]] || die "127.0.0.1 is not trusted and $hba does not exist"
        say "trusting 127.0.0.1 connections in $hba (local testing)"
        sed -i -e '1i # added by edgecloud infra/setup/system.sh: local testing only' \
            -e '1i host all all 127.0.0.1/32 trust' "$hba"
        pg_ctl reload
        for _ in $(seq 20); do pg_trusts && break; sleep 0.5; done
        pg_trusts || die "PostgreSQL still asks for a password on 127.0.0.1"
    fi
    say "postgresql: $pg_ver/$pg_name answering on 127.0.0.1:5432 (trust)"
fi
