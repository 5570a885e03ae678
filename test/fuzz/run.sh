#!/usr/bin/env bash
# Build and run the libFuzzer harnesses of test/fuzz/ (see README.md).
#
#   test/fuzz/run.sh build              build build/fuzz/fuzz_<harness> only
#   test/fuzz/run.sh replay             run every harness once over its corpus
#                                       and regression inputs (what CI runs)
#   test/fuzz/run.sh fuzz [SECONDS]     fuzz each harness for SECONDS (default 60)
#   test/fuzz/run.sh short              replay + FUZZ_SHORT_SECONDS (10) s of fuzzing per harness (CI)
#   test/fuzz/run.sh replay-pending     say which inputs of regression-pending/
#                                       still fail (move fixed ones to regression/)
# Any command may be followed by harness names (request template comfy_msg b64)
# to run only those. Environment: FUZZ_CC (default clang), FUZZ_JOBS (harnesses
# fuzzed at once, default nproc), FUZZ_ARGS (extra libFuzzer flags), FUZZ_CFLAGS
# (extra compiler flags).
#
# The last line is "fuzz: N passed, N failed", N counting harnesses.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FZ=test/fuzz
OUT=build/fuzz
ALL=(request template comfy_msg b64)
CC=${FUZZ_CC:-clang}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
SRCS=(log util utf8 b64 request template comfy_msg)
PKGS=(libevent jansson libwebsockets libcrypto)
# request.c validates convert_output with convert.c's conv_parse; that file
# also holds the libvips worker, so it brings libvips along.
if [ -f src/convert.c ]; then SRCS+=(convert); PKGS+=(vips); fi

max_len() {
  case $1 in
    request|template) echo 16384 ;;
    comfy_msg) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

die() { echo "fuzz: $*" >&2; echo "fuzz: 0 passed, ${#HARN[@]} failed"; exit 1; }

cmd=${1:-replay}
[ $# -gt 0 ] && shift
SECONDS_EACH=60
if [ "$cmd" = fuzz ] && [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then SECONDS_EACH=$1; shift; fi
HARN=("$@")

# Pending findings (pending.env): applied unless the caller set the variables,
# and never to replay-pending, which is there to show them failing.
if [ -f "$FZ/pending.env" ] && [ "$cmd" != replay-pending ]; then
  while IFS='=' read -r k v; do
    case $k in
      FUZZ_SKIP_KNOWN|FUZZ_CFLAGS)
        if [ -z "${!k+x}" ]; then export "$k=$v"; echo "fuzz: pending findings: $k=$v"; fi ;;
    esac
  done < <(grep -E '^[A-Z_]+=' "$FZ/pending.env")
fi

[ ${#HARN[@]} -eq 0 ] && HARN=("${ALL[@]}")
for h in "${HARN[@]}"; do
  [ -f "$FZ/fuzz_$h.c" ] || die "no harness $FZ/fuzz_$h.c (have: ${ALL[*]})"
done

# ---- build ---------------------------------------------------------------
CFLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -Wall -Wextra -Isrc -I"$FZ")
OBJFLAGS=(-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
          -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -Wall -Wextra -Isrc -I"$FZ")

build() {
  command -v "$CC" >/dev/null 2>&1 ||
    die "$CC not found: the fuzz harnesses need clang with libFuzzer" \
        "(Debian: apt-get install clang libclang-rt-14-dev, or make deps)"
  command -v pkg-config >/dev/null 2>&1 || die "pkg-config not found (make deps)"
  local pc libs
  pc=$(pkg-config --cflags "${PKGS[@]}" 2>/dev/null) ||
    die "pkg-config cannot find ${PKGS[*]} (make deps)"
  libs=$(pkg-config --libs "${PKGS[@]}" 2>/dev/null) ||
    die "pkg-config cannot find ${PKGS[*]} (make deps)"
  mkdir -p "$OUT/obj" "$OUT/logs"
  # libFuzzer itself: a clear message rather than a link error later.
  if [ ! -f "$OUT/.libfuzzer-ok" ]; then
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}\n' \
      >"$OUT/probe.c"
    "$CC" -fsanitize=fuzzer,address,undefined -o "$OUT/probe" "$OUT/probe.c" \
      >"$OUT/logs/probe.log" 2>&1 ||
      die "$CC cannot link -fsanitize=fuzzer (Debian: apt-get install libclang-rt-14-dev);" \
          "see $OUT/logs/probe.log"
    touch "$OUT/.libfuzzer-ok"
  fi
  local objs=() s o h rebuilt=0
  # FUZZ_CFLAGS adds compiler flags (e.g. -fno-sanitize=float-cast-overflow to
  # fuzz past a pending finding); a change of flags rebuilds everything.
  # shellcheck disable=SC2206
  CFLAGS+=(${FUZZ_CFLAGS:-}); OBJFLAGS+=(${FUZZ_CFLAGS:-})
  if [ "$(cat "$OUT/.flags" 2>/dev/null)" != "$CC ${OBJFLAGS[*]} ${PKGS[*]}" ]; then
    rm -f "$OUT"/obj/*.o
    echo "$CC ${OBJFLAGS[*]} ${PKGS[*]}" >"$OUT/.flags"
  fi
  # Any header or this script changing rebuilds everything: cheap enough.
  local newest
  newest=$(ls -t src/*.h "$FZ"/*.h "$FZ/run.sh" | head -n 1)
  for s in "${SRCS[@]}"; do
    o="$OUT/obj/$s.o"
    if [ ! -f "$o" ] || [ "src/$s.c" -nt "$o" ] || [ "$newest" -nt "$o" ]; then
      echo "  CC      src/$s.c"
      # shellcheck disable=SC2086
      "$CC" "${OBJFLAGS[@]}" $pc -c -o "$o" "src/$s.c" || die "compiling src/$s.c failed"
      rebuilt=1
    fi
    objs+=("$o")
  done
  for h in "${HARN[@]}"; do
    local bin="$OUT/fuzz_$h" src="$FZ/fuzz_$h.c"
    if [ $rebuilt = 1 ] || [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$newest" -nt "$bin" ]; then
      echo "  LD      $bin"
      # shellcheck disable=SC2086
      "$CC" "${CFLAGS[@]}" $pc -o "$bin" "$src" "${objs[@]}" $libs -lb64 -lpthread -lm ||
        die "building $bin failed"
    fi
  done
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export FUZZ_REPO_ROOT=$ROOT

inputs_of() {   # dirs... -> the input files in them
  local d
  for d in "$@"; do
    [ -d "$d" ] && find "$d" -type f ! -name '.*' ! -name 'README*' | sort
  done
}

declare -A RESULT

# ---- replay ----------------------------------------------------------------
replay_one() {
  local h=$1 bin="$OUT/fuzz_$1" log="$OUT/logs/$1.replay.log"
  local files
  mapfile -t files < <(inputs_of "$FZ/corpus/$h" "$FZ/regression/$h")
  if [ ${#files[@]} -eq 0 ]; then
    echo "replay $h: no inputs in $FZ/corpus/$h"; return 1
  fi
  if "$bin" -timeout=5 -rss_limit_mb=2048 "${files[@]}" >"$log" 2>&1; then
    echo "replay $h: ${#files[@]} inputs ok"
    return 0
  fi
  echo "replay $h: FAILED (log $log):"
  grep -a -A1 -E "Running:|ERROR|invariant|SUMMARY" "$log" | grep -av "^--" | tail -n 12 | sed 's/^/  /'
  return 1
}

# ---- fuzz ----------------------------------------------------------------
fuzz_one() {   # harness seconds -> writes $OUT/logs/<h>.status
  local h=$1 secs=$2 bin="$OUT/fuzz_$1" log="$OUT/logs/$1.fuzz.log"
  local scratch="$OUT/corpus/$h" art="$OUT/artifacts/$h" dict=() f
  mkdir -p "$scratch"
  rm -rf "$art"; mkdir -p "$art"
  # The committed corpus seeds a scratch copy; new inputs stay in build/.
  while IFS= read -r f; do cp -n "$f" "$scratch/" 2>/dev/null; done \
    < <(inputs_of "$FZ/corpus/$h" "$FZ/regression/$h")
  [ -f "$FZ/dict/$h.dict" ] && dict=(-dict="$FZ/dict/$h.dict")
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -max_len="$(max_len "$h")" -timeout=5 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" \
    ${FUZZ_ARGS:-} "$scratch" >"$log" 2>&1
  echo $? >"$OUT/logs/$h.status"
}

report_fuzz() {   # harness -> 0 ok / 1 failed, prints a summary line
  local h=$1 log="$OUT/logs/$1.fuzz.log" rc runs eps cov ft corp
  rc=$(cat "$OUT/logs/$h.status" 2>/dev/null || echo 1)
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  corp=$(grep -oE 'corp: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  if [ "$rc" = 0 ]; then
    echo "fuzz $h: ok, ${SECONDS_EACH} s, ${runs:-?} runs, ${eps:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
    return 0
  fi
  mkdir -p "$FZ/regression/$h"
  local saved=()
  for f in "$OUT/artifacts/$h"/*; do
    [ -f "$f" ] || continue
    cp "$f" "$FZ/regression/$h/"
    saved+=("$FZ/regression/$h/$(basename "$f")")
  done
  echo "fuzz $h: FAILED (exit $rc, ${runs:-?} runs, cov ${cov:-?}); log $log"
  [ ${#saved[@]} -gt 0 ] && echo "  input saved as ${saved[*]}"
  grep -a -A1 -E "invariant|ERROR: |SUMMARY|runtime error" "$log" | grep -av "^--" | head -n 12 | sed 's/^/  /'
  grep -a -E "^ +#[0-9]+ .* in .*(/src/|/test/fuzz/)" "$log" | head -n 12 | sed 's/^/  /'
  return 1
}

fuzz_all() {   # seconds
  local h running=0
  for h in "${HARN[@]}"; do
    rm -f "$OUT/logs/$h.status"
    fuzz_one "$h" "$1" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
  for h in "${HARN[@]}"; do
    if report_fuzz "$h"; then :; else RESULT[$h]=fail; fi
  done
}

# ---- main --------------------------------------------------------------------
build
for h in "${HARN[@]}"; do RESULT[$h]=ok; done
case $cmd in
  build)
    echo "fuzz: built ${HARN[*]} in $OUT/"
    ;;
  replay)
    for h in "${HARN[@]}"; do replay_one "$h" || RESULT[$h]=fail; done
    ;;
  fuzz)
    fuzz_all "$SECONDS_EACH"
    ;;
  short)
    for h in "${HARN[@]}"; do replay_one "$h" || RESULT[$h]=fail; done
    SECONDS_EACH=${FUZZ_SHORT_SECONDS:-10}
    fuzz_all "$SECONDS_EACH"
    ;;
  replay-pending)
    for h in "${HARN[@]}"; do
      while IFS= read -r f; do
        if "$OUT/fuzz_$h" -timeout=5 "$f" >"$OUT/logs/pending.log" 2>&1; then
          echo "pending $h: $f passes now: move it to $FZ/regression/$h/"
        else
          echo "pending $h: $f still fails:"
          grep -a -A1 -E "invariant|ERROR: |SUMMARY" "$OUT/logs/pending.log" | head -n 3 | sed 's/^/  /'
        fi
      done < <(inputs_of "$FZ/regression-pending/$h")
    done
    exit 0
    ;;
  *)
    echo "usage: $0 build|replay|fuzz [SECONDS]|short|replay-pending [harness...]" >&2
    exit 2
    ;;
esac
pass=0; fail=0
for h in "${HARN[@]}"; do
  if [ "${RESULT[$h]}" = ok ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
