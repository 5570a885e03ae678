#!/usr/bin/env bash
# make soak: the soak test of test/soak/soak.py against the ComfyUI emulator.
#   bash test/soak/run.sh [N] [--concurrency C] [--time-limit S]
# N defaults to 10000. SIDECAR_BIN names the binary (default ./comfy-sidecar).
# The last line is "soak: N passed, N failed"; the exit status is non-zero on
# any failure.
set -u
cd "$(dirname "$0")/../.."
export SIDECAR_BIN=${SIDECAR_BIN:-$PWD/comfy-sidecar}
if [ ! -x "$SIDECAR_BIN" ]; then
  echo "soak: $SIDECAR_BIN does not exist (run make)"
  echo "soak: 0 passed, 1 failed"
  exit 1
fi
exec /usr/bin/python3 test/soak/soak.py "$@"
