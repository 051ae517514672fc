#!/usr/bin/env bash
# An emulated Debian arm64 bookworm root filesystem (what Raspberry Pi OS 64-bit is built on), from Debian's
# own packages only: debootstrap + qemu-user-static. Cached: a second call finds the stamp and returns at once.
#
#   scripts/arm/rootfs.sh            build (or reuse) the rootfs, print its path
#   scripts/arm/rootfs.sh --mount    also bind-mount /proc, /dev, /sys, /tmp and the shared data into it
#                                    (and nothing over /proc/cpuinfo: see --cpu and --cpuinfo)
#   scripts/arm/rootfs.sh --cpu CPU  show the emulated programs an Arm /proc/cpuinfo for CPU (cortex-a72: Pi 4,
#                                    cortex-a76: Pi 5), after --mount
#   scripts/arm/rootfs.sh --cpuinfo CPU  write that /proc/cpuinfo into $EDGE_VERIFY_ARM_ROOT, print its path
#                                    (check.sh binds it in a private mount namespace per emulated process)
#   scripts/arm/rootfs.sh --umount   undo --mount
#
# Needs root. The rootfs lives outside the repository: $EDGE_VERIFY_ARM_ROOT, default /var/tmp/edge-verify-arm.
# Emulation goes through binfmt_misc (the kernel runs every aarch64 binary with qemu-aarch64-static, also
# inside the chroot and in subprocesses); where it cannot be registered, the script says so and fails:
# debootstrap's second stage and the test suite's subprocesses need it.
set -euo pipefail

ARM_ROOT="${EDGE_VERIFY_ARM_ROOT:-/var/tmp/edge-verify-arm}"
ROOTFS="$ARM_ROOT/rootfs"
SUITE=bookworm
MIRROR="${EDGE_VERIFY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python3 3.11 as on Raspberry Pi OS bookworm; mosquitto, openssl and systemd for the MQTT, TLS and unit tests
PACKAGES="python3,python3-venv,ca-certificates,mosquitto,openssl,systemd"
# added later: installed with apt inside the rootfs when missing, without rebuilding it (procps: /bin/kill,
# which the unit's ExecReload names and systemd-analyze verify checks)
EXTRA_PACKAGES="procps"
STAMP="$ROOTFS/.edge-verify-rootfs"
STAMP_TEXT="$SUITE arm64 $PACKAGES"

log() { echo "[arm rootfs] $*" >&2; }

ensure_binfmt() {
  local bm=/proc/sys/fs/binfmt_misc
  if [ ! -e "$bm/register" ]; then
    mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null || true
  fi
  if [ -e "$bm/qemu-aarch64" ] && grep -q '^enabled' "$bm/qemu-aarch64"; then
    return 0
  fi
  if [ ! -w "$bm/register" ]; then
    log "binfmt_misc is not available here: aarch64 binaries cannot run under emulation"; return 1
  fi
  # Debian's own registration line (qemu-user-static ships it); flag F keeps it usable inside the chroot
  log "registering qemu-aarch64-static with binfmt_misc (/usr/lib/binfmt.d/qemu-aarch64.conf)"
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$bm/register" || {
    log "cannot register with binfmt_misc"; return 1; }
}

ensure_tools() {
  if ! command -v debootstrap >/dev/null || ! [ -x /usr/bin/qemu-aarch64-static ]; then
    log "installing debootstrap and qemu-user-static (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap qemu-user-static \
      >/dev/null
  fi
}

build() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ]; then
    return 0
  fi
  log "debootstrap $SUITE arm64 into $ROOTFS (a few minutes, emulated)"
  umount_all
  rm -rf "$ROOTFS"
  mkdir -p "$ARM_ROOT/debs"
  debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" --cache-dir="$ARM_ROOT/debs" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ARM_ROOT/debootstrap.log" 2>&1 || {
    log "debootstrap failed, last lines of $ARM_ROOT/debootstrap.log:"; tail -20 "$ARM_ROOT/debootstrap.log" >&2
    return 1; }
  echo "$STAMP_TEXT" > "$STAMP"
}

# qemu-user 7.2 does not emulate /proc/cpuinfo for aarch64: the guest would read the host's x86 one, and
# LiteRT >= 2.2 (its CPU detection parses that file) then crashes with SIGSEGV while creating an
# interpreter. A Raspberry Pi's file, one entry per host CPU (what /sys/devices/system/cpu shows), fixes it.
cpuinfo() {
  local cpu=$1 features part variant rev model n i
  case "$cpu" in
    cortex-a72) features="fp asimd evtstrm crc32 cpuid"; part=0xd08; variant=0x0; rev=3
                model="Raspberry Pi 4 Model B (emulated: qemu cortex-a72)" ;;
    cortex-a76) features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
                part=0xd0b; variant=0x4; rev=1; model="Raspberry Pi 5 Model B (emulated: qemu cortex-a76)" ;;
    *) log "no /proc/cpuinfo known for $cpu (cortex-a72 or cortex-a76)"; return 1 ;;
  esac
  n=$(nproc --all)
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
    printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$rev"
  done
  printf 'Model\t\t: %s\n' "$model"
}

cpuinfo_file() {
  local file="$ARM_ROOT/cpuinfo-$1"
  mkdir -p "$ARM_ROOT"
  cpuinfo "$1" > "$file.$$"
  # replace only a changed file: a bind mount of a replaced (unlinked) file cannot be mounted over
  if cmp -s "$file.$$" "$file"; then rm -f "$file.$$"; else mv "$file.$$" "$file"; fi
  echo "$file"
}

bind_cpuinfo() {
  local file
  file=$(cpuinfo_file "$1")
  while is_mounted "$ROOTFS/proc/cpuinfo"; do umount "$ROOTFS/proc/cpuinfo"; done
  mount --bind "$file" "$ROOTFS/proc/cpuinfo"
}

ensure_extras() {
  local missing=() p
  for p in $EXTRA_PACKAGES; do
    chroot "$ROOTFS" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]} inside the rootfs"
    chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
      "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${missing[*]}" >/dev/null
  fi
  # debootstrap writes no /etc/hosts: without it "localhost" does not resolve (the TLS tests use it)
  [ -s "$ROOTFS/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    > "$ROOTFS/etc/hosts"
}

is_mounted() { mountpoint -q "$1" 2>/dev/null; }

mount_all() {
  local shared="${EDGE_VERIFY_SHARED:-}"
  for d in proc sys dev dev/pts tmp; do mkdir -p "$ROOTFS/$d"; done
  is_mounted "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
  is_mounted "$ROOTFS/sys" || mount --rbind /sys "$ROOTFS/sys"
  is_mounted "$ROOTFS/dev" || mount --bind /dev "$ROOTFS/dev"
  is_mounted "$ROOTFS/dev/pts" || mount --bind /dev/pts "$ROOTFS/dev/pts"
  is_mounted "$ROOTFS/tmp" || mount -t tmpfs tmpfs "$ROOTFS/tmp"
  if [ -n "$shared" ]; then
    # the shared data at the same path inside, read-only
    mkdir -p "$ROOTFS$shared"
    is_mounted "$ROOTFS$shared" || { mount --bind "$shared" "$ROOTFS$shared" && mount -o remount,bind,ro \
      "$ROOTFS$shared"; }
  fi
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
}

umount_all() {
  [ -d "$ROOTFS" ] || return 0
  # deepest first
  grep -o " $ROOTFS[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

case "${1:-}" in
  --umount) umount_all; exit 0 ;;
  --cpuinfo) cpuinfo_file "${2:?--cpuinfo CPU}"; exit 0 ;;
  --mount) ensure_tools; ensure_binfmt; build; ensure_extras; mount_all ;;
  --cpu) is_mounted "$ROOTFS/proc" || { log "mount first (--mount)"; exit 1; }; bind_cpuinfo "${2:?--cpu CPU}" ;;
  "") ensure_tools; ensure_binfmt; build; ensure_extras ;;
  *) echo "usage: $0 [--mount [CPU]|--cpu CPU|--cpuinfo CPU|--umount]" >&2; exit 2 ;;
esac
echo "$ROOTFS"
