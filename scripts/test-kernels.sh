#!/usr/bin/env bash
# make test-kernels: the privileged suite (the same test binaries as `make test`) inside each
# kernel of the matrix, booted under qemu with this machine's root filesystem (virtme-ng), plus
# the running kernel on the host. Prints a table of kernel x test binary with pass/fail/skip
# counts and exits non-zero on any failure, any skip under CI, or any kernel that does not boot.
#
#   scripts/test-kernels.sh [KERNEL...]     KERNEL: 5.10 6.1 6.12 running (default: all four)
#
# Kernels are Debian packages (bullseye's 5.10, bookworm's 6.1, bookworm-backports' 6.12),
# fetched with `apt-get download` through a private sources list (the machine's apt
# configuration is left as it is), unpacked with `dpkg-deb -x` into $KERNEL_CACHE (never
# installed) and reused on later runs. virtme-ng comes from PyPI into a venv in the cache.
#
# Environment: KERNEL_CACHE (default target/kernels), KERNEL_TIMEOUT (seconds per kernel,
# default 1500), KERNEL_MEMORY (guest memory, default 2G), KERNEL_CPUS (default 2),
# KERNEL_TESTS (space-separated test binary names, default every one; e.g. "privileged stats_e2e").
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
cache="${KERNEL_CACHE:-$target/kernels}"
timeout_s="${KERNEL_TIMEOUT:-1500}"
memory="${KERNEL_MEMORY:-2G}"
cpus="${KERNEL_CPUS:-2}"
export PATH="$PATH:${HOME:-/root}/.cargo/bin:/root/.cargo/bin"

# The matrix: name, apt package name pattern (newest match wins), suites that carry it.
declare -A PATTERN=(
    [5.10]='^linux-image-5\.10\.0-[0-9]+-amd64$'
    [6.1]='^linux-image-6\.1\.0-[0-9]+-amd64$'
    [6.12]='^linux-image-6\.12\.[0-9]+\+deb12-amd64$'
)
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(5.10 6.1 6.12 running)

die() { echo "test-kernels: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (qemu, kernel modules, the privileged suite): run sudo make test-kernels"
[ "$(uname -m)" = x86_64 ] || die "the matrix is of amd64 kernels; this machine is $(uname -m)"
command -v cargo >/dev/null || die "no cargo on PATH: install Rust (https://rustup.rs)"

# --- tools -----------------------------------------------------------------------------------
deb_pkgs=(qemu-system-x86 kmod busybox-static cpio file binutils python3-venv)
missing=()
for p in "${deb_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-kernels: installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$cache"
venv="$cache/venv"
VNG_VERSION=1.42
if ! "$venv/bin/vng" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
    echo "test-kernels: installing virtme-ng $VNG_VERSION (PyPI) into $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed: install python3-venv"
    "$venv/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi
# vng runs virtme-run through /bin/sh: the venv's bin must be on PATH.
export PATH="$venv/bin:$PATH"

# --- kernels ---------------------------------------------------------------------------------
apt_dir="$cache/apt"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::status=/var/lib/dpkg/status" -o "APT::Sandbox::User=root")
apt_ready=0
apt_private_update() {
    [ "$apt_ready" = 1 ] && return
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    local key=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$key" ] || die "$key missing: apt-get install debian-archive-keyring"
    local mirror
    mirror=$(grep -rhoE 'https?://[^ ]*debian(/)?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
        grep -v security | head -1 | tr -d ' ')
    mirror="${mirror:-http://deb.debian.org/debian}"
    mirror="${mirror%/}"
    local security="${mirror%/debian}/debian-security"
    cat >"$apt_dir/sources.list" <<EOF
deb [signed-by=$key] $mirror bullseye main
deb [signed-by=$key] $security bullseye-security main
deb [signed-by=$key] $mirror bookworm main
deb [signed-by=$key] $security bookworm-security main
deb [signed-by=$key] $mirror bookworm-backports main
EOF
    echo "test-kernels: refreshing the private package lists ($apt_dir)" >&2
    apt-get "${apt_opts[@]}" update -q >"$apt_dir/update.log" 2>&1 ||
        die "apt-get update with the private sources list failed: see $apt_dir/update.log"
    apt_ready=1
}

# Prints the unpacked root of kernel $1 (downloading and unpacking it on first use).
kernel_root() {
    local name="$1" pkg dir
    dir=$(ls -d "$cache/$name"/linux-image-* 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$dir" ] && [ -f "$dir/.unpacked" ]; then
        echo "$dir"
        return
    fi
    apt_private_update
    pkg=$(apt-cache "${apt_opts[@]}" pkgnames linux-image- | grep -E "${PATTERN[$name]}" | sort -V | tail -1)
    [ -n "$pkg" ] || die "no package matches ${PATTERN[$name]} in the private lists"
    mkdir -p "$cache/$name/debs"
    (cd "$cache/$name/debs" && apt-get "${apt_opts[@]}" download -q "$pkg" >&2) ||
        die "apt-get download $pkg failed"
    dir="$cache/$name/$pkg"
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$cache/$name/debs/$pkg"_*.deb "$dir"
    touch "$dir/.unpacked"
    echo "$dir"
}

# --- test binaries ---------------------------------------------------------------------------
echo "test-kernels: building the test binaries"
cargo build --locked --workspace --bins -q
list="$target/kernel-test-binaries.txt"
# One line per test binary: name, package directory (the cwd cargo test gives it), executable.
cargo test --locked --workspace --no-run --message-format=json -q 2>/dev/null |
    python3 -c '
import json, os, sys
seen = set()
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    t = m["target"]
    name = t["name"]
    if "lib" in t["kind"]:
        name += ":unit"
    elif "bin" in t["kind"]:
        name += ":bin"
    if name in seen:
        continue
    seen.add(name)
    print(name, os.path.dirname(m["manifest_path"]), m["executable"])
' >"$list"
[ -s "$list" ] || die "cargo test --no-run listed no test binaries"
if [ -n "${KERNEL_TESTS:-}" ]; then
    filtered=$(grep -E "^($(echo "$KERNEL_TESTS" | tr ' ' '|')) " "$list" || true)
    [ -n "$filtered" ] || die "KERNEL_TESTS=$KERNEL_TESTS names no test binary; see $list"
    echo "$filtered" >"$list"
fi

# The script each kernel runs as root: mounts, the cgroup controllers kubelet would enable, then
# every test binary with CI=true (a skip fails), results written to $1.
guest="$target/kernel-guest.sh"
cat >"$guest" <<'EOF'
#!/bin/bash
out="$1"; list="$2"
export CI=true RUST_BACKTRACE=1 PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
uname -r >"$out/uname"
grep -q ' - bpf ' /proc/self/mountinfo || mount -t bpf bpf /sys/fs/bpf
grep -q ' - tracefs ' /proc/self/mountinfo || mount -t tracefs tracefs /sys/kernel/tracing
# A node's cgroup2 root delegates memory and pids to kubepods; a bare VM's root enables none.
cg=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
for c in memory pids; do echo "+$c" >"$cg/cgroup.subtree_control" 2>/dev/null || true; done
ulimit -l unlimited 2>/dev/null || true
# The guest's /var is an overlay (over the host's podman storage, whose database names another
# driver), on which podman's overlay driver cannot stack: the image test keeps its layers plainly
# (vfs) in a store of the guest's own.
store=/tmp/podnet-guest-containers
mkdir -p "$store"
printf '[storage]\ndriver = "vfs"\nrunroot = "%s/run"\ngraphroot = "%s/graph"\n' "$store" "$store" >"$store/storage.conf"
export CONTAINERS_STORAGE_CONF="$store/storage.conf"
# No systemd runs in the guest: podman manages cgroups itself and logs events to a file.
printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' >"$store/containers.conf"
export CONTAINERS_CONF="$store/containers.conf"
# The guest's /etc is an overlay on 9p, where 5.10 takes ~25 s to read the ~300 files of
# /etc/ssl/certs that the TLS stack (rustls-native-certs) loads for every kube client: point it
# at the one bundle file instead (the same certificates).
[ -f /etc/ssl/certs/ca-certificates.crt ] && export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
while read -r name dir exe; do
    start=$(date +%s)
    (cd "$dir" && "$exe" --test-threads=2) >"$out/$name.log" 2>&1
    echo "$? $(( $(date +%s) - start ))" >"$out/$name.rc"
done <"$list"
touch "$out/finished"
EOF
chmod +x "$guest"

# --- run -------------------------------------------------------------------------------------
results="$target/kernel-results"
rm -rf "$results"
mkdir -p "$results"
failed=0
for k in "${kernels[@]}"; do
    out="$results/$k"
    mkdir -p "$out"
    start=$(date +%s)
    if [ "$k" = running ]; then
        echo "test-kernels: running kernel $(uname -r) (on the host)"
        "$guest" "$out" "$list"
    else
        [ -n "${PATTERN[$k]:-}" ] || die "unknown kernel '$k': choose from ${!PATTERN[*]} running"
        root=$(kernel_root "$k")
        vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -1)
        echo "test-kernels: booting $(basename "$vmlinuz") under qemu (TCG)"
        # TCG: this VM's KVM cannot run stock kernels. vng's own exit code and stdout say nothing
        # about the tests (results are files in $out); its console goes to vng.log.
        # Emulated CPUs stall whenever the host is busy: the guest's soft-lockup and RCU-stall
        # detectors then report the host's load, not the guest's, so they are off (a real hang
        # still shows as a test binary that does not finish).
        timeout --kill-after=30 "$timeout_s" vng --verbose --disable-kvm --run "$vmlinuz" --memory "$memory" \
            --cpus "$cpus" --rwdir "$out" --append "nosoftlockup rcupdate.rcu_cpu_stall_suppress=1" \
            --exec "$guest $out $list" >"$out/vng.log" 2>&1 </dev/null || true
    fi
    echo "test-kernels: $k took $(( $(date +%s) - start )) s"
    if [ ! -f "$out/uname" ]; then
        echo "test-kernels: kernel $k did not boot (see $out/vng.log)" >&2
        failed=1
    elif [ ! -f "$out/finished" ]; then
        echo "test-kernels: kernel $k did not finish the suite within ${timeout_s}s (see $out/vng.log)" >&2
        failed=1
    fi
    # A WARN or BUG splat in the guest's kernel log is a failure even when every test passed:
    # podnet must never make a user's kernel complain.
    if [ -f "$out/vng.log" ] && grep -aqE 'WARNING: CPU:|BUG:|Oops:|Call Trace:' "$out/vng.log"; then
        echo "test-kernels: kernel $k logged a warning or bug during the suite:" >&2
        grep -aE -B2 -A3 'cut here|WARNING: CPU:|BUG:|Oops:' "$out/vng.log" | head -20 >&2
        failed=1
    fi
done

# --- report ----------------------------------------------------------------------------------
python3 - "$results" "$list" "${kernels[@]}" <<'EOF' || failed=1
import os, re, sys
results, listfile, kernels = sys.argv[1], sys.argv[2], sys.argv[3:]
names = [l.split()[0] for l in open(listfile) if l.strip()]
bad = False
releases, cells, failures = [], {}, []
for k in kernels:
    d = os.path.join(results, k)
    try:
        releases.append(open(os.path.join(d, "uname")).read().strip())
    except OSError:
        releases.append("did not boot")
        bad = True
    for n in names:
        log, rcf = os.path.join(d, n + ".log"), os.path.join(d, n + ".rc")
        if not os.path.exists(rcf):
            cells[k, n] = "not run"
            bad = True
            continue
        rc = open(rcf).read().split()[0]
        text = open(log, errors="replace").read()
        p = f = 0
        for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
            p, f = p + int(m[1]), f + int(m[2])
        skips = len(re.findall(r"^SKIP ", text, re.M))
        cell = f"{p}/{f}/{skips}"
        if rc != "0" or f or skips or not re.search("test result:", text):
            bad = True
            cell += " FAIL"
            failures.append((k, n, re.findall(r"^---- (\S+) stdout ----", text, re.M), log))
        cells[k, n] = cell
head = ["test binary"] + [f"{k} ({r})" for k, r in zip(kernels, releases)]
rows = [[n] + [cells.get((k, n), "not run") for k in kernels] for n in names]
widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
print("\npassed/failed/skipped, per test binary and kernel:\n")
for r in [head, ["-" * w for w in widths]] + rows:
    print("| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |")
for k, n, tests, log in failures:
    print(f"\n{k} {n} failed: {', '.join(tests) or 'see the log'} ({log})")
print("\ntest-kernels: " + ("FAILED" if bad else "every kernel passed"))
sys.exit(1 if bad else 0)
EOF
exit $failed
