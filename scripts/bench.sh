#!/usr/bin/env bash
# podnet's benchmarks: per-event cost of each BPF program, throughput with and without podnet,
# counters-map reads, attach/detach time, peak RSS, the outside-pods overhead and the agent's
# footprint, on this machine's real kernel. `sudo make bench` builds the binaries and runs this.
# Arguments pick sections (events throughput maps attach rss overhead agent; default all). The report is printed and written to
# target/bench-report.md.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
export PATH="$PATH:${HOME:-/root}/.cargo/bin:/root/.cargo/bin"

if [ "$(id -u)" != 0 ]; then
    echo "bench: needs root (eBPF, cgroups, network namespaces, veth pairs). run: sudo make bench" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "bench: no cargo on PATH: install Rust (https://rustup.rs)" >&2
    exit 1
fi
# The workload binary the benchmark starts inside sandbox pods is found next to it.
if [ ! -x "$target/release/podnet-sandbox" ]; then
    echo "bench: building the sandbox workload binary (cargo build --release -p podnet-testing --bins)"
    cargo build --release --locked -p podnet-testing --bins
fi

# The file-open programs attach to syscall tracepoints: tracefs must be mounted.
if ! grep -qE ' - tracefs ' /proc/self/mountinfo; then
    mount -t tracefs tracefs /sys/kernel/tracing
fi

# The benchmark switches kernel.bpf_stats_enabled on and restores it itself; this trap restores it
# too if the run is interrupted.
stats=/proc/sys/kernel/bpf_stats_enabled
previous="$(cat "$stats")"
trap 'echo "$previous" > "$stats"' EXIT

report="${PODNET_BENCH_REPORT:-$target/bench-report.md}"
export PODNET_BENCH_REPORT="$report"
# Bounded: the whole run takes about a minute on 2 vCPUs, plus about 2.5 minutes for `agent`.
timeout 600 cargo bench --locked -p podnet --bench podnet -- "$@"
echo "bench: report in $report"
