#!/usr/bin/env bash
# One entry point for a fresh Debian machine (run as root):
#   bash scripts/dev.sh demo   set everything up, start the host service, run the demo
#   bash scripts/dev.sh test   set everything up, run the whole test suite
#   bash scripts/dev.sh setup  only set up (packages, virtualenv, native code, rootfs)
# Every step is idempotent, so running it again is cheap.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv="$here/.venv"
rootfs="${AIOHCS_DEMO_ROOTFS:-/var/lib/aiohcs/rootfs/busybox}"
log() { printf '\033[1m[dev]\033[0m %s\n' "$*" >&2; }

need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

setup() {
  [ "$(id -u)" = 0 ] || { echo "run as root: containers need it" >&2; exit 1; }
  # gcc/make/libc6-dev: libcomputecore and the static container init; python3-dev: the cffi
  # callback module; runc/crun: OCI runtimes; busybox-static: the demo and test rootfs;
  # mingw-w64-common: Windows' computecore.h, read by the ABI fidelity test; qemu-system-x86,
  # qemu-utils, ovmf: the VM backend (QEMU, disk image formats, UEFI firmware); cpio: the
  # utility VM test lists the built initramfs with `cpio -t` (not in a minimal Debian install).
  need_packages gcc make libc6-dev python3 python3-venv python3-dev runc crun busybox-static \
    mingw-w64-common ca-certificates qemu-system-x86 qemu-utils ovmf cpio
  if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  log "installing aiohcs into the virtualenv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e ".[test]"
  # crun refuses every container on a hybrid cgroup host (v1 hierarchies plus cgroup2 at
  # /sys/fs/cgroup/unified) while a controller -- typically hugetlb -- sits on cgroup v2. Bind
  # such controllers to v1 hierarchies (mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb)
  # so `--runtime crun` and the crun tests work. Idempotent: does nothing on pure v1/v2 hosts or
  # once done; lasts until reboot. Not fatal: runc works either way. (The service itself never
  # changes the layout unless started with --prepare-cgroups.)
  log "checking the cgroup layout for crun"
  "$venv/bin/python" -m aiohcs.host.container.cgroups --prepare >&2 \
    || log "crun will not work on this host (see above); runc is unaffected"
  log "building libcomputecore and the container init"
  make -s -C aiohcs/_native
  log "building the busybox rootfs in $rootfs"
  bash scripts/build-rootfs.sh "$rootfs" >/dev/null
  # The utility VM (Debian kernel + busybox + guest agent), cached in /var/cache/aiohcs/uvm.
  log "building the utility VM"
  compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null || apt-get update -qq  # apt-get download needs lists
  "$venv/bin/python" -m aiohcs.uvm path >/dev/null
}

service_up() {
  "$venv/bin/python" - <<'PY'
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(os.environ.get("AIOHCS_SOCKET", "/run/aiohcs/hcs.sock"))
except OSError:
    sys.exit(1)
PY
}

demo() {
  setup
  started=""
  if ! service_up; then
    log "starting the host service (log: /var/log/aiohcs-host.log)"
    "$venv/bin/python" -m aiohcs.host >>/var/log/aiohcs-host.log 2>&1 &
    started=$!
    for _ in $(seq 100); do service_up && break; sleep 0.1; done
  fi
  trap 'if [ -n "$started" ]; then kill "$started" 2>/dev/null; wait "$started" 2>/dev/null; fi; true' EXIT
  log "container demo (examples/demo.py)"
  "$venv/bin/python" examples/demo.py examples/busybox-container.json
  # The utility VM through the same service: boot, process, pause/resume, save/restore, shutdown.
  log "VM demo (examples/vm_demo.py)"
  "$venv/bin/python" examples/vm_demo.py
}

run_tests() {
  setup
  log "running the tests"
  "$venv/bin/python" -m pytest "$@"
}

case "${1:-}" in
  setup) setup ;;
  demo) demo ;;
  test) shift; run_tests "$@" ;;
  *) echo "usage: $0 {demo|test|setup} [pytest args]" >&2; exit 2 ;;
esac
