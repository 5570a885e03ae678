#!/usr/bin/env bash
# Run every test suite and add up their "N passed, N failed" lines.
# UNIT_BIN and SIDECAR_BIN say which builds to test (make test / make sanitize).
set -u
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
total_p=0; total_f=0
log=$(mktemp -d)/tests.log

run_suite() {   # name, command...
  local name=$1; shift
  echo "=== $name"
  # Shown as it runs and kept for the summary. (Not `tee /dev/stderr`: with
  # stderr redirected to a file, that reopens and truncates it.)
  "$@" 2>&1 | tee "$log.$name" || true
  local line
  line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$log.$name" | tail -n 1)
  if [ -z "$line" ]; then
    echo "$name: did not report a result (crashed?)"
    total_f=$((total_f + 1))
    return
  fi
  local p f
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  total_p=$((total_p + p)); total_f=$((total_f + f))
}

run_suite unit "${UNIT_BIN:-build/release/unit-tests}"
# Every regression input, then a few seconds of fuzzing per harness.
FUZZ_SHORT_SECONDS=${FUZZ_SHORT_SECONDS:-5} run_suite fuzz bash test/fuzz/run.sh short
run_suite emulator $PY test/pyrunner.py test/emulator --name emulator
SIDECAR_BIN=${SIDECAR_BIN:-$PWD/comfy-sidecar} \
  run_suite deploy $PY test/pyrunner.py test/deploy --name deploy
SIDECAR_BIN=${SIDECAR_BIN:-$PWD/comfy-sidecar} \
  run_suite integration $PY test/pyrunner.py test/integration --name integration
SIDECAR_BIN=${SIDECAR_BIN:-$PWD/comfy-sidecar} \
  run_suite browser $PY test/pyrunner.py test/browser --name browser
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
