//! Compiles the BPF C sources (`../bpf-src/*.bpf.c` and the loader's test programs in
//! `../bpf-src/tests/*.bpf.c`) into `$OUT_DIR/<name>.bpf.o`, where tests `include_bytes!` them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("../bpf-src");
    println!("cargo:rerun-if-changed={}", src.display());
    // A directory is scanned recursively: headers and new sources are covered too.
    println!("cargo:rerun-if-changed={}", src.join("tests").display());

    // <linux/types.h> includes <asm/types.h>, which Debian keeps in the multiarch include dir.
    let host_arch = std::env::var("HOST").unwrap_or_default();
    let host_arch = host_arch.split('-').next().unwrap_or_default().to_string();
    let multiarch = PathBuf::from(format!("/usr/include/{host_arch}-linux-gnu"));

    for dir in [src.clone(), src.join("tests")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut sources: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
            .collect();
        sources.sort();
        for file in sources {
            println!("cargo:rerun-if-changed={}", file.display());
            compile(&file, &src, &multiarch, &out);
        }
    }
}

fn compile(file: &Path, include: &Path, multiarch: &Path, out: &Path) {
    let name = file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".bpf.c", ".bpf.o");
    let mut cmd = Command::new("clang");
    cmd.args(["-target", "bpf", "-O2", "-g", "-Wall"])
        .arg("-I")
        .arg(include);
    if multiarch.is_dir() {
        cmd.arg("-I").arg(multiarch);
    }
    cmd.arg("-c").arg(file).arg("-o").arg(out.join(&name));
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "cannot run clang ({e}) to compile {}: install the BPF toolchain with `make deps` \
             or `apt-get install clang llvm libbpf-dev`",
            file.display()
        )
    });
    assert!(
        status.success(),
        "clang failed to compile {} (see the errors above)",
        file.display()
    );
}
