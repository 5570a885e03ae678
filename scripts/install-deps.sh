#!/usr/bin/env bash
# Install every package that the build, the tests and `make run` need:
# Debian packages, then the test tools from the npm registry (pinned by the
# package-lock.json files under test/). Idempotent and quiet when everything
# is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential pkg-config
  libevent-dev libjansson-dev libcurl4-openssl-dev libb64-dev libwebsockets-dev libssl-dev libvips-dev
  python3 python3-aiohttp python3-pil python3-yaml
  curl jq patchelf
  chromium clang libclang-rt-14-dev valgrind
)
# Node.js runs the independent checkers (webhook signatures, Dockerfile lint);
# any recent one will do, Debian's included.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: only when their lock file changed or they are absent.
#   web/        Swagger UI files served at /docs (runtime; no install scripts)
#   test/node/  signature verifier, OpenAPI validator, playwright-core
#   test/deploy Dockerfile linters
for dir in web test/node test/deploy; do
  [ -f "$dir/package-lock.json" ] || continue
  stamp="$dir/node_modules/.installed-lock"
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "install-deps: npm ci in $dir"
    flags=(--no-audit --no-fund --loglevel=error)
    [ "$dir" = web ] && flags+=(--omit=dev --ignore-scripts)
    npm ci --prefix "$dir" "${flags[@]}" >/dev/null
    cp "$dir/package-lock.json" "$stamp"
  fi
done
