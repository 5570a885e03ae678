#!/usr/bin/env bash
# Run a subset of the integration suite with the sidecar under valgrind
# (memcheck) and report whether valgrind found errors.
#
#   bash test/soak/valgrind.sh [-k PATTERN ...]
#
# The harness starts SIDECAR_BIN directly, so SIDECAR_BIN here is a small
# wrapper script that execs valgrind on the real binary (REAL_BIN, default
# ./comfy-sidecar) with
#   --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
# and one log file per process in $VG_DIR (kept; printed at the end). A
# sidecar whose valgrind found an error exits 99, which the harness reports
# as a test failure ("exit status 99, expected 0"); every log is also scanned
# for its ERROR SUMMARY and "definitely lost" lines.
#
# Default subset: test_api.ApiTests (every API path, sync jobs, faults of
# ComfyUI's answers, 100 concurrent requests), a crash with restart
# (test_lifecycle CrashTests.test_crash_mid_job_restarts), OOM with /free and
# a shutdown that fails a job and delivers its webhook (test_faults).
# Tests that bound a duration may fail under valgrind's slowdown: such
# failures are reported separately from valgrind's verdict.
#
# Exit status: 0 clean; 1 valgrind found errors (or left no log); 2 valgrind
# clean but some tests failed.
set -u
cd "$(dirname "$0")/../.."
REAL_BIN=${REAL_BIN:-$PWD/comfy-sidecar}
if [ ! -x "$REAL_BIN" ]; then echo "valgrind.sh: $REAL_BIN does not exist (run make)"; exit 1; fi
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed"; exit 1; }
VG_DIR=${VG_DIR:-$(mktemp -d /tmp/sidecar-valgrind.XXXXXX)}
mkdir -p "$VG_DIR"
WRAP="$VG_DIR/comfy-sidecar-valgrind"
cat >"$WRAP" <<WRAPPER
#!/bin/sh
exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \\
  --show-leak-kinds=definite --error-exitcode=99 --num-callers=30 \\
  --log-file=$VG_DIR/vg.%p.log "$REAL_BIN" "\$@"
WRAPPER
chmod +x "$WRAP"

if [ $# -eq 0 ]; then
  set -- -k test_api.ApiTests -k test_crash_mid_job_restarts \
         -k test_oom_500_and_free_called -k test_sigterm_job_over_grace
fi
echo "valgrind.sh: real binary $REAL_BIN, logs in $VG_DIR"
SIDECAR_BIN="$WRAP" /usr/bin/python3 test/pyrunner.py test/integration --name valgrind "$@" \
  2>&1 | tee "$VG_DIR/tests.log"
tests_line=$(grep -E "^valgrind: [0-9]+ passed, [0-9]+ failed" "$VG_DIR/tests.log" | tail -n 1)

n_logs=0; n_bad=0
for f in "$VG_DIR"/vg.*.log; do
  [ -e "$f" ] || continue
  # the forked child's log before its exec of ComfyUI has no summary: skip it
  grep -q "ERROR SUMMARY" "$f" || continue
  n_logs=$((n_logs + 1))
  errs=$(grep -E "ERROR SUMMARY: [0-9]+" "$f" | tail -n 1 | sed -E 's/.*ERROR SUMMARY: ([0-9,]+) errors.*/\1/' | tr -d ,)
  lost=$(grep -E "definitely lost:" "$f" | tail -n 1 | sed -E 's/.*definitely lost: ([0-9,]+) bytes.*/\1/' | tr -d ,)
  echo "  $(basename "$f"): ${errs:-?} error(s), definitely lost ${lost:-0} bytes"
  if [ "${errs:-1}" != "0" ] || [ "${lost:-0}" != "0" ]; then
    n_bad=$((n_bad + 1))
    sed -n '/== [A-Z].*\(Invalid\|uninitialised\|definitely lost in\|Mismatched\|overlap\)/,/==  *$/p' "$f" | head -n 60
  fi
done
echo "valgrind.sh: ${tests_line:-no test result line}"
if [ "$n_logs" -eq 0 ]; then
  echo "valgrind.sh: no valgrind summary found (did the sidecar run under valgrind?)"
  exit 1
fi
if [ "$n_bad" -gt 0 ]; then
  echo "valgrind.sh: valgrind found errors in $n_bad of $n_logs sidecar run(s); logs in $VG_DIR"
  exit 1
fi
echo "valgrind.sh: valgrind clean in $n_logs sidecar run(s) (0 errors, 0 bytes definitely lost)"
case "$tests_line" in
  *" 0 failed"*) exit 0 ;;
  *) echo "valgrind.sh: some tests failed under valgrind (see above)"; exit 2 ;;
esac
