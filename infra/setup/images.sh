#!/usr/bin/env bash
# Build the base test image edgecloud/busybox:latest locally: no public registry is
# reachable, so we `docker import` a tiny root filesystem made of Debian's static busybox.
set -euo pipefail

# shellcheck source=infra/setup/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

image=edgecloud/busybox:latest
busybox=/bin/busybox   # from busybox-static: no shared libraries needed inside the image

if docker image inspect "$image" >/dev/null 2>&1; then
    say "image $image: present"
    exit 0
fi

[[ -x "$busybox" ]] || die "$busybox missing (run infra/setup/system.sh first)"
# A dynamically linked busybox would not run in an image without libc.
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is not statically linked (install busybox-static)"
fi

say "building $image from $busybox"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

mkdir -p "$rootfs"/{bin,etc,root,tmp}
chmod 1777 "$rootfs/tmp"
chmod 700 "$rootfs/root"
cp "$busybox" "$rootfs/bin/busybox"
# Every applet as a symlink in /bin (so sh, ls, sleep, ... all resolve on the default PATH).
while read -r applet; do
    [[ "$applet" == busybox || -e "$rootfs/bin/$applet" ]] && continue
    ln -s busybox "$rootfs/bin/$applet"
done < <("$busybox" --list)
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP

tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf - . |
    docker import --change 'CMD ["/bin/sh"]' - "$image" >/dev/null

# One real run proves the image works (without a network: it needs none to say ok).
if [[ "$(docker run --rm --network none "$image" echo ok 2>&1)" != ok ]]; then
    docker image rm -f "$image" >/dev/null 2>&1 || true
    die "image $image was built but does not run"
fi
say "image $image: built and verified"
