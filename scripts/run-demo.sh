#!/usr/bin/env bash
# `make run`: start the sidecar on localhost:3000 with the ComfyUI emulator
# (test/emulator/) as its supervised ComfyUI, wait until it is ready, and
# print a request to try. Stops both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/.run
mkdir -p "$RUN/output" "$RUN/input" "$RUN/temp"
PORT=${PORT:-3000}
COMFY_PORT=${COMFYUI_PORT_HOST:-8188}

export PORT COMFYUI_PORT_HOST=$COMFY_PORT
export COMFY_HOME=$RUN
export WARMUP_PROMPT_FILE=${WARMUP_PROMPT_FILE:-$ROOT/comfy-workflows/warmup/sdxl-with-refiner.json}
export STARTUP_CHECK_INTERVAL_S=${STARTUP_CHECK_INTERVAL_S:-0.2}
export STARTUP_CHECK_MAX_TRIES=${STARTUP_CHECK_MAX_TRIES:-100}
export ALWAYS_RESTART_COMFYUI=${ALWAYS_RESTART_COMFYUI:-true}
export CMD="/usr/bin/python3 $ROOT/test/emulator/comfyui_emulator.py --listen 127.0.0.1 --port $COMFY_PORT --output-directory $RUN/output --input-directory $RUN/input --temp-directory $RUN/temp --step-time 0.02 --disable-auto-launch"

echo "Starting comfy-sidecar on port $PORT with the ComfyUI EMULATOR as its backend"
echo "(test/emulator/: it speaks ComfyUI's protocol and writes real PNGs, but it is not ComfyUI)."
./comfy-sidecar &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM

ready=0
for _ in $(seq 1 300); do
  if ! kill -0 $pid 2>/dev/null; then break; fi
  if curl -fs "http://localhost:$PORT/ready" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1   # polling the readiness probe, not waiting for a guess
done
if [ $ready -ne 1 ]; then
  echo "comfy-sidecar did not become ready; see the log above" >&2
  kill -TERM $pid 2>/dev/null || true
  wait $pid || true
  exit 1
fi

cat <<MSG

comfy-sidecar is ready on http://localhost:$PORT (backend: the ComfyUI emulator).
Try, in another terminal:

  curl -s http://localhost:$PORT/prompt -H 'Content-Type: application/json' \\
       -d @$ROOT/scripts/demo-prompt.json | jq -r '.images[0]' | base64 -d > image.png

image.png is then a 1024x1024 PNG. Ctrl-C stops the sidecar and the emulator.

MSG
wait $pid
