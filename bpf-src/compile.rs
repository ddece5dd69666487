// Compiles BPF C sources with clang. Shared by the build scripts of `loader/` and `cli/` through
// `include!("../bpf-src/compile.rs")`, so both build the objects the same way.

/// Compiles `src` (a `*.bpf.c` file) into `out_dir/<name>.bpf.o` and returns the object's path.
/// Panics with the fix when clang is missing or the compile fails: a build script has no better
/// way to report.
#[allow(dead_code)]
fn compile_bpf(src: &std::path::Path, out_dir: &std::path::Path) -> std::path::PathBuf {
    let stem = src.file_name().unwrap().to_string_lossy().replace(".bpf.c", ".bpf.o");
    let out = out_dir.join(stem);
    // The directory holding podnet.h, also for sources in bpf-src/tests/.
    let include = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpf-src");
    // <linux/types.h> includes <asm/types.h>, which Debian keeps in the multiarch directory.
    let multiarch = std::process::Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| format!("{}-linux-gnu", std::env::consts::ARCH));
    // The architecture whose `struct pt_regs` kprobe programs read (as libbpf's
    // __TARGET_ARCH_* names it).
    let arch = match multiarch.split('-').next().unwrap_or_default() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string();
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let status = std::process::Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {clang} to compile {}: {e}. Install the BPF toolchain with \
                 `sudo make deps` (apt-get install clang llvm libbpf-dev)",
                src.display()
            )
        });
    if !status.success() {
        panic!(
            "{clang} failed to compile {} ({status}); if <bpf/bpf_helpers.h> or <asm/types.h> is \
             missing, run `sudo make deps` (libbpf-dev, linux-libc-dev)",
            src.display()
        );
    }
    out
}
