#!/usr/bin/env bash
# Vendor the gateway's front-end assets from the npm registry (pinned versions), so that
# nothing is loaded from a CDN at run time. Idempotent: skips what is already in place.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$EDGECLOUD_ROOT"

VENDOR=services/gateway/src/edgecloud_gateway/static/vendor
SWAGGER_UI_VERSION=5.35.0

vendor_npm() {  # vendor_npm PACKAGE VERSION DEST FILE...
    local package=$1 version=$2 dest=$3
    shift 3
    local missing=0 file
    for file in "$@"; do [[ -f "$dest/$file" ]] || missing=1; done
    if (( ! missing )) && [[ "$(cat "$dest/VERSION" 2>/dev/null)" == "$version" ]]; then
        return 0
    fi
    command -v npm >/dev/null || die "npm is needed to vendor $package (apt-get install npm)"
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    say "vendoring $package@$version"
    (cd "$tmp" && npm pack --silent "$package@$version" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    mkdir -p "$dest"
    for file in "$@"; do cp "$tmp/package/$file" "$dest/$file"; done
    printf '%s\n' "$version" > "$dest/VERSION"
}

vendor_npm swagger-ui-dist "$SWAGGER_UI_VERSION" "$VENDOR/swagger-ui" \
    swagger-ui-bundle.js swagger-ui.css favicon-32x32.png
say "front-end assets in place"
