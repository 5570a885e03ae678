#!/usr/bin/env bash
# make bench: measure comfy-sidecar against the ComfyUI emulator (issue 6) and
# write BENCHMARKS.md at the repo root.
#
#   bash bench/run.sh [bench.py options]     e.g. --pairs 400, --no-write
#
# Builds nothing but bench/b64_bench.c (into a temp dir): ./comfy-sidecar must
# be built already (SIDECAR_BIN overrides the binary). Installs the Debian
# packages it needs when they are missing (as root). Loopback only; the run
# is bounded (about 2 minutes on 2 cores, killed after 9).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
BIN=${SIDECAR_BIN:-$PWD/comfy-sidecar}

if [ ! -x "$BIN" ]; then
  echo "bench: $BIN is not built (run make first)" >&2
  exit 1
fi

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/b64/cencode.h ] || need+=(libb64-dev)
$PY -c 'import aiohttp' >/dev/null 2>&1 || need+=(python3-aiohttp)
$PY -c 'import PIL' >/dev/null 2>&1 || need+=(python3-pil)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench: missing ${need[*]}: install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "bench: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -Isrc -o "$tmp/b64_bench" bench/b64_bench.c src/b64.c -lb64 -lcrypto

# 1,000 clients at once: the sidecar and the emulator inherit this limit.
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# SIGINT on overrun lets bench.py stop the emulator and the sidecar itself.
timeout -s INT -k 30 540 $PY bench/bench.py --sidecar "$BIN" --b64-bin "$tmp/b64_bench" "$@"
