#!/usr/bin/env bash
# Builds podnet's FROM-scratch image (Dockerfile): stages the podnet binary (stripped) and exactly
# the shared libraries `ldd` names, with the dynamic loader, at their paths under
# target/image/<name>/rootfs (plus the CA bundle, see below), then builds with docker (when its
# engine answers) or podman.
#
#   k8s/build-image.sh                          # IMAGE=podnet:dev PODNET=target/release/podnet
#   IMAGE=registry.example/podnet:1 PODNET=/path/to/podnet k8s/build-image.sh
#
# `make image` runs it after the release build; cli/tests/deploy_manifests.rs runs it with the
# test's own binary and tag. Exits 2 when neither docker nor podman can build.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${IMAGE:-podnet:dev}"
PODNET="${PODNET:-$ROOT/target/release/podnet}"
# A directory of this build's own (tests build concurrently with `make image`).
NAME="${STAGE_NAME:-$(printf '%s' "$IMAGE" | tr -c 'A-Za-z0-9._-' '_')}"
# STAGE_DIR: where to stage (default target/image; the kernel-matrix guests see the repository
# read-only and stage under their writable /tmp).
STAGE="${STAGE_DIR:-$ROOT/target/image}/$NAME"

[ -x "$PODNET" ] || { echo "build-image: no podnet binary at $PODNET (cargo build --release -p podnet)" >&2; exit 1; }

if [ -n "${ENGINE:-}" ]; then
  engine="$ENGINE"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null 2>&1; then
  engine=podman
else
  echo "build-image: needs docker (with a running engine) or podman: apt-get install podman" >&2
  exit 2
fi

rm -rf "$STAGE"
mkdir -p "$STAGE/rootfs/usr/local/bin"
# --strip-debug keeps the symbol table (backtraces still name functions) and drops ~90% of a
# debug build's size.
objcopy --strip-debug "$PODNET" "$STAGE/rootfs/usr/local/bin/podnet"
chmod 0755 "$STAGE/rootfs/usr/local/bin/podnet"

# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
# (0x...)", and the kernel's "linux-vdso.so.1 (0x...)", which is no file.
libs=0
while read -r path; do
  [ -n "$path" ] || continue
  mkdir -p "$STAGE/rootfs$(dirname "$path")"
  cp -L "$path" "$STAGE/rootfs$path"
  libs=$((libs + 1))
done < <(ldd "$PODNET" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
if ldd "$PODNET" 2>&1 | grep -q 'not a dynamic executable'; then
  echo "build-image: $PODNET is static: no libraries to copy" >&2
elif [ "$libs" = 0 ]; then
  echo "build-image: ldd named no libraries for $PODNET" >&2
  exit 1
fi
# The CA bundle: kube's TLS client (rustls with the platform's roots) refuses to start without any
# system CA certificate, even for an http:// or in-cluster API server (measured: "No CA
# certificates were loaded from the system"). It is data, not code: the Debian ca-certificates set.
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || { echo "build-image: no $CA: apt-get install ca-certificates" >&2; exit 1; }
mkdir -p "$STAGE/rootfs/etc/ssl/certs"
cp -L "$CA" "$STAGE/rootfs$CA"
# /usr/lib64 -> lib64 and /lib -> usr/lib style links are not needed: every library sits at the
# path ldd resolved, and the binary's interpreter (PT_INTERP) is the loader path copied above.

echo "build-image: $engine build -t $IMAGE ($(du -sh "$STAGE/rootfs" | cut -f1): podnet + $libs libraries)" >&2
extra=()
# podman otherwise keeps an untagged intermediate image for the ARG step.
[ "$engine" = podman ] && extra=(--layers=false)
"$engine" build -q "${extra[@]}" -f "$ROOT/Dockerfile" -t "$IMAGE" "$STAGE"
rm -rf "$STAGE"
