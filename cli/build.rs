//! Compiles podnet's BPF programs (`bpf-src/podnet.bpf.c`) so the binary can embed the object,
//! and the benchmark's empty cgroup_skb programs (`bpf-src/floor.bpf.c`), which only the `events`
//! section of `cli/benches/podnet` includes.

include!("../bpf-src/compile.rs");

fn main() {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpf-src");
    println!("cargo:rerun-if-changed={}", src.join("podnet.h").display());
    compile_bpf(&src.join("podnet.bpf.c"), &out_dir);
    compile_bpf(&src.join("floor.bpf.c"), &out_dir);
}
