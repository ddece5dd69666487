#!/usr/bin/env bash
# podnet's demo: sandbox pods with load, listed by a stub API server, watched by the real podnet.
# `sudo make demo` builds the binaries and runs this; extra arguments go to podnet-demo
# (--seconds N, --keep; see `target/release/podnet-demo --help`).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}/release"
podnet="${PODNET:-$target/podnet}"
demo="$target/podnet-demo"

if [ "$(id -u)" != 0 ]; then
    echo "demo: needs root (cgroups, network namespaces, veth pairs, eBPF). run: sudo make demo" >&2
    exit 1
fi

missing=0
if [ ! -x "$podnet" ]; then
    echo "demo: no podnet binary at $podnet: run \`make build\` (cargo build --release --locked -p podnet)" >&2
    missing=1
fi
for bin in podnet-demo podnet-sandbox; do
    if [ ! -x "$target/$bin" ]; then
        echo "demo: no $bin at $target/$bin: run \`cargo build --release --locked -p podnet-testing --bins\`" >&2
        missing=1
    fi
done
if [ "$missing" != 0 ]; then
    echo "demo: or simply: sudo make demo (builds everything first)" >&2
    exit 1
fi

# podnet counts file opens with syscall tracepoints, which live in tracefs.
if ! grep -qE ' - tracefs ' /proc/self/mountinfo; then
    if [ -d /sys/kernel/tracing ]; then
        mount -t tracefs tracefs /sys/kernel/tracing \
            || echo "demo: could not mount tracefs at /sys/kernel/tracing; file opens may not be counted" >&2
    else
        echo "demo: /sys/kernel/tracing does not exist (kernel without tracefs?); file opens may not be counted" >&2
    fi
fi

# exec: Ctrl-C reaches podnet-demo directly, which stops podnet and removes the sandbox.
exec "$demo" --podnet "$podnet" "$@"
