#!/bin/sh
# Build a minimal busybox-static root filesystem in DIR (idempotent).
#
#   scripts/build-rootfs.sh DIR
#
# The result is enough for the host service's container tests and the demo:
# bin/busybox plus one symlink per applet, /etc/passwd (root, nobody),
# /etc/group, /etc/hostname, and the empty mount points the OCI runtime needs.
# Running it again on an existing DIR only fills in what is missing.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1

busybox=${BUSYBOX:-}
if [ -z "$busybox" ]; then
    for candidate in /bin/busybox /usr/bin/busybox; do
        if [ -x "$candidate" ]; then busybox=$candidate; break; fi
    done
fi
if [ -z "$busybox" ]; then
    echo "$0: busybox not found (install busybox-static)" >&2
    exit 1
fi
# A dynamically linked busybox would need the host's libc inside the rootfs.
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
    if command -v file >/dev/null 2>&1; then
        echo "$0: $busybox is not statically linked (install busybox-static)" >&2
        exit 1
    fi
fi

mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/etc" \
         "$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/root" "$dir/home" \
         "$dir/var" "$dir/run"
chmod 1777 "$dir/tmp"

# Copy (not link) so the rootfs does not depend on the host file staying put.
if ! cmp -s "$busybox" "$dir/bin/busybox" 2>/dev/null; then
    cp "$busybox" "$dir/bin/busybox.tmp"
    chmod 0755 "$dir/bin/busybox.tmp"
    mv -f "$dir/bin/busybox.tmp" "$dir/bin/busybox"
fi

# `busybox --list-full` prints paths such as bin/sh, usr/bin/env.
"$dir/bin/busybox" --list-full | while read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = "bin/busybox" ] && continue
    target="$dir/$applet"
    if [ ! -e "$target" ] && [ ! -L "$target" ]; then
        mkdir -p "$(dirname "$target")"
        ln -s /bin/busybox "$target"
    fi
done

[ -f "$dir/etc/passwd" ] || cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
[ -f "$dir/etc/group" ] || cat > "$dir/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
[ -f "$dir/etc/hostname" ] || echo aiohcs > "$dir/etc/hostname"
exit 0
