#!/usr/bin/env bash
# `make arm-check`: the product on emulated aarch64 (Debian arm64 bookworm, what Raspberry Pi OS 64-bit is
# built on), installed from its own wheel with its dependencies' aarch64 wheels from PyPI.
#
# Steps (ARM_CHECK_STEPS, comma-separated, default all): install, doctor, tests, encodings, count.
#   install    rootfs (scripts/arm/rootfs.sh, cached), product wheel built here, aarch64 wheels, a venv
#   doctor     `edge-verify doctor` (versions, interpreter, the embedding self-test on the sample photos)
#   tests      the suite's fast part (-m "not slow") against the installed wheel
#   encodings  200 LFW faces on aarch64 against x86 -> bench/results/arm-encodings.json
#   count      instructions per stage, int8 and fp32, aarch64 and x86 -> bench/results/arm-instructions.json
# Emulated CPU for install/doctor/tests: ARM_CPU (default cortex-a72, Raspberry Pi 4); encodings and count run
# on each of ARM_CPUS (default cortex-a72,cortex-a76: Pi 4 and Pi 5). Summary: bench/results/arm-check.json.
# Needs root (debootstrap, chroot, binfmt_misc), ../shared, and apt for qemu-user and valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
PY="${PYTHON:-$REPO/.venv/bin/python}"
export EDGE_VERIFY_SHARED
EDGE_VERIFY_SHARED=$(cd "${EDGE_VERIFY_SHARED:-$REPO/../shared}" && pwd)
ARM_ROOT="${EDGE_VERIFY_ARM_ROOT:-/var/tmp/edge-verify-arm}"
STEPS=",${ARM_CHECK_STEPS:-install,doctor,tests,encodings,count},"
ARM_CPU="${ARM_CPU:-cortex-a72}"
ARM_CPUS="${ARM_CPUS:-cortex-a72,cortex-a76}"
VENV=/opt/edge-verify          # inside the rootfs
SRC=/opt/edge-verify-src       # the tests and scripts, inside the rootfs
OUT="$REPO/build/arm"
RESULTS="$REPO/bench/results"
mkdir -p "$OUT" "$RESULTS"
: > "$OUT/steps.tsv"
# a partial run reports only what it ran
[[ "$STEPS" != *",tests,"* ]] || rm -f "$OUT/junit.xml"
[[ "$STEPS" != *",doctor,"* ]] || rm -f "$OUT/doctor.txt"

has() { [[ "$STEPS" == *",$1,"* ]]; }
log() { echo "== arm-check: $*" >&2; }
timed() {  # timed NAME CMD...: run, record the wall time
  local name=$1 t0 rc=0; shift
  t0=$(date +%s.%N)
  "$@" || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$rc" \
    >> "$OUT/steps.tsv"
  return $rc
}
ensure_apt() {  # ensure_apt COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  log "apt-get install $2"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
in_arm() {  # run a command inside the emulated Debian arm64 as CPU $QEMU_CPU, seeing that CPU's /proc/cpuinfo
  local cpu="${QEMU_CPU:-$ARM_CPU}" info
  info=$(scripts/arm/rootfs.sh --cpuinfo "$cpu")
  # a private mount namespace: runs on different CPUs may go on side by side
  QEMU_CPU=$cpu unshare --mount --propagation private /bin/sh -c \
    'mount --bind "$1" "$2/proc/cpuinfo" && shift 2 && exec "$@"' sh "$info" "$ROOTFS" \
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    QEMU_CPU="$cpu" EDGE_VERIFY_SHARED="$EDGE_VERIFY_SHARED" EDGE_VERIFY_STATE_DIR=/tmp/ev-state "$@"
}

T0=$(date +%s)
ROOTFS=$(timed rootfs scripts/arm/rootfs.sh --mount)
[ -n "${ARM_KEEP_MOUNTS:-}" ] || trap 'scripts/arm/rootfs.sh --umount' EXIT
log "rootfs $ROOTFS ($(in_arm uname -m), python $(in_arm python3 -c 'import platform; print(platform.python_version())'))"
# the tests and the encodings read real photos: without them every test fails for the same reason
in_arm test -d "$EDGE_VERIFY_SHARED/data/lfw/images" \
  || { echo "arm-check: $EDGE_VERIFY_SHARED/data/lfw/images is not visible inside $ROOTFS (the bind mount failed?)" >&2; exit 2; }

install() {
  rm -rf "$OUT/dist"
  "$PY" -m pip wheel -q --no-deps -w "$OUT/dist" . 2>&1 | grep -v "is ignored" >&2 || true
  local wheel; wheel=$(ls "$OUT"/dist/edge_verify-*.whl)
  # the aarch64 wheels of the versions this machine's venv has (the x86 side of the comparison)
  "$PY" -m pip freeze 2>/dev/null | grep -iE '^(numpy|opencv-python-headless|ai-edge-litert|paho-mqtt|cryptography|gpiozero|pytest|jsonschema|starlette|uvicorn|jinja2|python-multipart|httpx|selenium)==' \
    > "$OUT/constraints.txt" || true
  local platforms=() v
  for v in 2_36 2_35 2_34 2_31 2_28 2_27 2_24 2_17; do platforms+=(--platform "manylinux_${v}_aarch64"); done
  platforms+=(--platform manylinux2014_aarch64)
  mkdir -p "$ARM_ROOT/wheels"
  rm -f "$ARM_ROOT"/wheels/edge_verify-*.whl  # pip download copies the product in: never resolve an old one
  "$PY" -m pip download -q --dest "$ARM_ROOT/wheels" --only-binary=:all: "${platforms[@]}" --python-version 3.11 \
    --implementation cp --abi cp311 -c "$OUT/constraints.txt" "$wheel[test,web]" 2>&1 | grep -v "is ignored" >&2 || true
  rm -rf "$ROOTFS/opt/wheels" && mkdir -p "$ROOTFS/opt/wheels"
  rm -f "$ARM_ROOT"/wheels/edge_verify-*.whl
  cp "$ARM_ROOT"/wheels/*.whl "$OUT/constraints.txt" "$ROOTFS/opt/wheels/"
  cp "$wheel" "$ROOTFS/opt/wheels/"
  [ -x "$ROOTFS$VENV/bin/python" ] || in_arm python3 -m venv "$VENV"
  # the product first (its version does not change between builds), then what its metadata asks for
  in_arm "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile --no-index --no-deps --force-reinstall \
    "/opt/wheels/$(basename "$wheel")"
  in_arm "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile --no-index --find-links /opt/wheels \
    -c /opt/wheels/constraints.txt "/opt/wheels/$(basename "$wheel")[test,web]"
  in_arm "$VENV/bin/python" -m pip list --format=freeze 2>/dev/null > "$OUT/arm-pip-freeze.txt"
}

sync_src() {  # the tests and scripts beside a checkout-shaped tree whose packages are the installed wheel's
  mkdir -p "$ROOTFS$SRC/build" && find "$ROOTFS$SRC" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
  git ls-files -co --exclude-standard | grep -v -e '^edge_verify/' -e '^converter/' | tar -cf - -T - | tar -xf - -C "$ROOTFS$SRC"
  local site; site=$(in_arm "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  ln -s "$site/edge_verify" "$ROOTFS$SRC/edge_verify"
  ln -s "$site/converter" "$ROOTFS$SRC/converter"
}

if has install; then log "install"; timed install install; fi
sync_src

if has doctor; then
  log "edge-verify doctor (the embedding self-test)"
  timed doctor in_arm sh -c "cd /tmp && edge-verify doctor" | tee "$OUT/doctor.txt" || true
fi

if has tests; then
  log "tests: pytest -m 'not slow' on aarch64 (QEMU_CPU=$ARM_CPU)"
  timed tests in_arm sh -c "cd $SRC && python -m pytest -q -m 'not slow' -p no:cacheprovider -rs \
    --junitxml=$SRC/build/junit.xml tests" 2>&1 | tee "$OUT/tests.txt" | tail -25 || true
  cp "$ROOTFS$SRC/build/junit.xml" "$OUT/junit.xml" 2>/dev/null || true
fi

if has encodings; then
  log "encodings: 200 LFW faces on x86_64 and on aarch64 ($ARM_CPUS)"
  timed encode_x86 "$PY" scripts/arm/encodings_check.py encode --out "$OUT/enc-x86_64.npz" || true
  arm_runs=()
  for cpu in ${ARM_CPUS//,/ }; do
    cp "$OUT/enc-x86_64.npz" "$ROOTFS$SRC/build/"
    if QEMU_CPU=$cpu timed "encode_$cpu" in_arm python "$SRC/scripts/arm/encodings_check.py" encode \
        --out "$SRC/build/enc-$cpu.npz" --crops "$SRC/build/enc-x86_64.npz"; then
      cp "$ROOTFS$SRC/build/enc-$cpu.npz" "$OUT/"
      arm_runs+=("$OUT/enc-$cpu.npz")
    fi
  done
  [ ${#arm_runs[@]} -eq 0 ] || timed compare "$PY" scripts/arm/encodings_check.py compare "$OUT/enc-x86_64.npz" \
    "${arm_runs[@]}" --json "$RESULTS/arm-encodings.json" || true
fi

if has count; then
  log "count: instructions per stage (qemu TCG plugin on aarch64, callgrind on x86_64)"
  ensure_apt qemu-aarch64 qemu-user
  ensure_apt valgrind valgrind
  ensure_apt gcc gcc
  [ -f build/sface_fp32.tflite ] || make build/sface_fp32.tflite
  gcc -shared -fPIC -O2 -fvisibility=hidden -o "$OUT/libinsn_count.so" scripts/arm/insn_count.c
  timed count "$PY" scripts/arm/count.py --rootfs "$ROOTFS" --venv "$VENV" --plugin "$OUT/libinsn_count.so" \
    --fp32 "$REPO/build/sface_fp32.tflite" --cpus "$ARM_CPUS" --json "$RESULTS/arm-instructions.json" || true
fi

"$PY" scripts/arm/summary.py --steps "$OUT/steps.tsv" --junit "$OUT/junit.xml" --doctor "$OUT/doctor.txt" \
  --pip-freeze "$OUT/arm-pip-freeze.txt" --wall "$(( $(date +%s) - T0 ))" --cpu "$ARM_CPU" \
  --json "$RESULTS/arm-check.json"
