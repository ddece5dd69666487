//! Compiles the BPF C sources (`../bpf-src/*.bpf.c` and the loader's test programs in
//! `../bpf-src/tests/*.bpf.c`) into `$OUT_DIR/<name>.bpf.o`, where tests `include_bytes!` them.
//! The compile step is shared with the cli's build script.

include!("../bpf-src/compile.rs");

fn main() {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("../bpf-src");
    for dir in [src.clone(), src.join("tests")] {
        // A directory is watched recursively: headers and new sources are covered too.
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut sources: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
            .collect();
        sources.sort();
        for file in sources {
            compile_bpf(&file, &out);
        }
    }
}
