#!/usr/bin/env bash
# Install every Debian package that the build, the tests and `make run` need.
# Idempotent and quiet when everything is already there.
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libevent-dev libjansson-dev libcurl4-openssl-dev libb64-dev libwebsockets-dev libssl-dev
  python3 python3-aiohttp python3-pil
  curl jq
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
