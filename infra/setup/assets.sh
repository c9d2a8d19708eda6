#!/usr/bin/env bash
# Vendor the gateway's front-end assets from the npm registry (pinned versions), so that
# nothing is loaded from a CDN at run time. Idempotent: skips what is already in place.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$EDGECLOUD_ROOT"

VENDOR=services/gateway/src/edgecloud_gateway/static/vendor
SWAGGER_UI_VERSION=5.35.0
# htmx stays on 2.0.x: the 2.x SSE extension does not support htmx 4 (PITFALLS.md).
HTMX_VERSION=2.0.11
HTMX_SSE_VERSION=2.2.4
UPLOT_VERSION=1.6.32
# The dashboard hashes uploads in slices; the browser's own crypto.subtle exists only on
# https or localhost, and dashboards are also opened at http://<lan address>.
JS_SHA256_VERSION=0.11.1
# The container page's terminal, and the release of its fit add-on made for xterm 6.0.
XTERM_VERSION=6.0.0
XTERM_FIT_VERSION=0.11.0

vendor_npm() {  # vendor_npm PACKAGE VERSION DEST FILE...
    local package=$1 version=$2 dest=$3
    shift 3
    local missing=0 file
    for file in "$@"; do [[ -f "$dest/${file##*/}" ]] || missing=1; done
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
    # Files land flat in DEST, whatever folder the package keeps them in.
    for file in "$@"; do cp "$tmp/package/$file" "$dest/${file##*/}"; done
    printf '%s\n' "$version" > "$dest/VERSION"
}

vendor_npm swagger-ui-dist "$SWAGGER_UI_VERSION" "$VENDOR/swagger-ui" \
    swagger-ui-bundle.js swagger-ui.css favicon-32x32.png
vendor_npm htmx.org "$HTMX_VERSION" "$VENDOR/htmx" dist/htmx.min.js
vendor_npm htmx-ext-sse "$HTMX_SSE_VERSION" "$VENDOR/htmx-ext-sse" dist/sse.min.js
vendor_npm js-sha256 "$JS_SHA256_VERSION" "$VENDOR/js-sha256" build/sha256.min.js
vendor_npm uplot "$UPLOT_VERSION" "$VENDOR/uplot" dist/uPlot.iife.min.js dist/uPlot.min.css
vendor_npm @xterm/xterm "$XTERM_VERSION" "$VENDOR/xterm" lib/xterm.js css/xterm.css
vendor_npm @xterm/addon-fit "$XTERM_FIT_VERSION" "$VENDOR/xterm-addon-fit" lib/addon-fit.js
say "front-end assets in place"
