# podnet — build, test and demo. Run the privileged targets as root (sudo make test, sudo make demo).

CARGO    ?= cargo
DEB_PKGS := clang llvm libbpf-dev linux-libc-dev iproute2 procps jq strace util-linux time podman runc prometheus
FUZZ_SECONDS ?= 60
# cargo may live in the invoking user's home when run under sudo.
export PATH := $(PATH):$(HOME)/.cargo/bin:/root/.cargo/bin

.PHONY: all deps build test test-kernels test-unit test-privileged lint fmt fuzz demo bench test-kind mounts clean help

all: build

help:
	@echo "make deps        install what podnet needs to build and test (Debian/Ubuntu, as root)"
	@echo "make build       release build of the podnet binary (target/release/podnet)"
	@echo "make test        unit and privileged integration tests on the real kernel (as root)"
	@echo "make test-kernels the same tests inside Debian's 5.10, 6.1 and 6.12 kernels (qemu) and the"
	@echo "                 running kernel (as root; KERNELS=\"5.10 6.1\" picks some)"
	@echo "make demo        sandbox pods with traffic, served by a stub API server, watched by podnet (as root;"
	@echo "                 DEMO_ARGS=--keep leaves the sandbox up to explore by hand)"
	@echo "make lint        rustfmt check and clippy -D warnings"
	@echo "make fuzz        bounded run of the loader's fuzz target (FUZZ_SECONDS=$(FUZZ_SECONDS))"
	@echo "make bench       benchmarks: per-event cost, throughput, map reads, attach time, peak RSS"
	@echo "make test-kind   end-to-end on a kind cluster (needs Docker and kind)"

# Installs only what is missing; a no-op on a machine that has everything.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all present ($(DEB_PKGS))"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: missing:$$missing — run 'sudo make deps'"; exit 1; fi; \
	  echo "deps: installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: missing:$$missing — install clang, llvm, libbpf headers and iproute2 with your package manager"; exit 1; fi
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "deps: no cargo on PATH: install Rust (https://rustup.rs)"; exit 1; }

build: deps
	$(CARGO) build --release --locked -p podnet

# bpffs and tracefs are needed by the loader's pin tests and the file-open tracepoints.
mounts:
	@if [ "$$(id -u)" = 0 ]; then \
	  grep -q ' /sys/fs/bpf .* - bpf ' /proc/self/mountinfo || mount -t bpf bpf /sys/fs/bpf; \
	  grep -qE ' - tracefs ' /proc/self/mountinfo || mount -t tracefs tracefs /sys/kernel/tracing; \
	fi

test: deps mounts
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace -- --test-threads=2

# The privileged suite inside each kernel of the matrix, booted under qemu (scripts/test-kernels.sh).
KERNELS ?=
test-kernels: deps mounts
	scripts/test-kernels.sh $(KERNELS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain. The
# compiled BPF objects (real and test programs) seed the corpus.
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	$(CARGO) build -p podnet-loader --tests
	mkdir -p loader/fuzz/corpus/parse_relocate loader/fuzz/seeds
	for d in target/debug/build/podnet-loader-*/out; do cp -f $$d/*.bpf.o loader/fuzz/seeds/; done
	cd loader/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run parse_relocate corpus/parse_relocate seeds -- -max_total_time=$(FUZZ_SECONDS)

demo: build mounts
	$(CARGO) build --release --locked -p podnet-testing --bins
	scripts/demo.sh $(DEMO_ARGS)

bench: deps mounts
	$(CARGO) build --release --locked --workspace --bins
	scripts/bench.sh

test-kind:
	k8s/kind-e2e.sh

# podnet's container image: FROM scratch, the release binary and the libraries ldd names
# (k8s/build-image.sh stages them and builds with docker or podman, whichever works).
IMAGE ?= podnet:dev
.PHONY: image
image: build
	IMAGE=$(IMAGE) PODNET=target/release/podnet k8s/build-image.sh

clean:
	$(CARGO) clean
