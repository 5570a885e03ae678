#!/bin/sh
# bundle-runtime.sh DEST BINARY...
#
# Makes DEST a self-contained runtime: each BINARY goes to DEST/bin, every
# shared library it loads (glibc and the dynamic loader included) to DEST/lib,
# and each copied binary is patched to use DEST/lib's loader (PT_INTERP) and
# to look for its libraries in DEST/lib first (DT_RPATH, which unlike
# DT_RUNPATH also covers the libraries' own dependencies and wins over
# LD_LIBRARY_PATH). The result runs on any glibc or musl Linux base of the same
# architecture, whatever its distribution release, and it changes nothing for
# the other programs there: the environment is untouched, so ComfyUI (started
# with execve) uses the base image's own loader and libraries.
#
# DEST must be the path the bundle will have at run time (docker/Dockerfile
# builds it in place at /opt/comfy-sidecar). Needs ldd, patchelf and a POSIX
# shell. Ends with a check that every library each binary loads comes from
# DEST/lib even with LD_LIBRARY_PATH pointing at the system's.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 DEST BINARY..." >&2
    exit 2
fi
dest=$1
shift
mkdir -p "$dest/bin" "$dest/lib"

for bin in "$@"; do
    name=$(basename "$bin")
    cp -L "$bin" "$dest/bin/$name"
    interp=$(patchelf --print-interpreter "$bin")
    cp -L "$interp" "$dest/lib/$(basename "$interp")"
    # "soname => /path (0x...)": copy the file under the soname it is asked for.
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' |
        while read -r soname path; do
            [ -e "$dest/lib/$soname" ] || cp -L "$path" "$dest/lib/$soname"
        done
    patchelf --set-interpreter "$dest/lib/$(basename "$interp")" \
        --force-rpath --set-rpath "$dest/lib" "$dest/bin/$name"
done

# A library with its own DT_RUNPATH would have its dependencies looked up
# outside DEST/lib (Debian's have none; make sure).
for lib in "$dest"/lib/*; do
    case $(basename "$lib") in ld-linux*|ld64*) continue ;; esac
    if [ -n "$(patchelf --print-rpath "$lib")" ]; then
        patchelf --force-rpath --set-rpath "$dest/lib" "$lib"
    fi
done

status=0
for bin in "$@"; do
    name=$(basename "$bin")
    out=$(LD_LIBRARY_PATH=/lib:/usr/lib:/lib64:/usr/lib64:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu \
          LD_TRACE_LOADED_OBJECTS=1 "$dest/bin/$name")
    foreign=$(printf '%s\n' "$out" | awk -v d="$dest/lib/" '
        $2 == "=>" && index($3, d) != 1 && $3 != "" { print }
        $2 != "=>" && $1 ~ /^\// && index($1, d) != 1 { print }')
    if [ -n "$foreign" ]; then
        echo "bundle-runtime: $name loads libraries from outside $dest/lib:" >&2
        printf '%s\n' "$foreign" >&2
        status=1
    fi
done
exit $status
