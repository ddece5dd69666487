//! Compiles the BPF C sources (`../bpf-src/*.bpf.c` and the loader's test programs in
//! `../bpf-src/tests/*.bpf.c`) into `$OUT_DIR/<name>.bpf.o`, where tests `include_bytes!` them.
//! The compile step is shared with the cli's build script. It also writes
//! `$OUT_DIR/kernel_layout.rs`, the kernel's struct layouts and constants as the installed uapi
//! headers define them, for the unit tests to check the loader's own copies against.

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
    kernel_layout(&out);
}

/// Fields of the kernel's structs that the loader's `#[repr(C)]` structs in `src/sys/mod.rs`
/// mirror: `(key, C type, member)`. The key names the field in `$OUT_DIR/kernel_layout.rs`.
const FIELDS: &[(&str, &str, &str)] = &[
    // BPF_MAP_CREATE
    ("bpf_attr.map_type", "union bpf_attr", "map_type"),
    ("bpf_attr.key_size", "union bpf_attr", "key_size"),
    ("bpf_attr.value_size", "union bpf_attr", "value_size"),
    ("bpf_attr.max_entries", "union bpf_attr", "max_entries"),
    ("bpf_attr.map_flags", "union bpf_attr", "map_flags"),
    ("bpf_attr.inner_map_fd", "union bpf_attr", "inner_map_fd"),
    ("bpf_attr.numa_node", "union bpf_attr", "numa_node"),
    ("bpf_attr.map_name", "union bpf_attr", "map_name"),
    ("bpf_attr.map_ifindex", "union bpf_attr", "map_ifindex"),
    ("bpf_attr.btf_fd", "union bpf_attr", "btf_fd"),
    (
        "bpf_attr.btf_key_type_id",
        "union bpf_attr",
        "btf_key_type_id",
    ),
    (
        "bpf_attr.btf_value_type_id",
        "union bpf_attr",
        "btf_value_type_id",
    ),
    (
        "bpf_attr.btf_vmlinux_value_type_id",
        "union bpf_attr",
        "btf_vmlinux_value_type_id",
    ),
    ("bpf_attr.map_extra", "union bpf_attr", "map_extra"),
    // BPF_MAP_*_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_FREEZE
    ("bpf_attr.map_fd", "union bpf_attr", "map_fd"),
    ("bpf_attr.key", "union bpf_attr", "key"),
    ("bpf_attr.value", "union bpf_attr", "value"),
    ("bpf_attr.next_key", "union bpf_attr", "next_key"),
    ("bpf_attr.flags", "union bpf_attr", "flags"),
    // BPF_MAP_LOOKUP_BATCH
    (
        "bpf_attr.batch.in_batch",
        "union bpf_attr",
        "batch.in_batch",
    ),
    (
        "bpf_attr.batch.out_batch",
        "union bpf_attr",
        "batch.out_batch",
    ),
    ("bpf_attr.batch.keys", "union bpf_attr", "batch.keys"),
    ("bpf_attr.batch.values", "union bpf_attr", "batch.values"),
    ("bpf_attr.batch.count", "union bpf_attr", "batch.count"),
    ("bpf_attr.batch.map_fd", "union bpf_attr", "batch.map_fd"),
    (
        "bpf_attr.batch.elem_flags",
        "union bpf_attr",
        "batch.elem_flags",
    ),
    ("bpf_attr.batch.flags", "union bpf_attr", "batch.flags"),
    // BPF_PROG_LOAD
    ("bpf_attr.prog_type", "union bpf_attr", "prog_type"),
    ("bpf_attr.insn_cnt", "union bpf_attr", "insn_cnt"),
    ("bpf_attr.insns", "union bpf_attr", "insns"),
    ("bpf_attr.license", "union bpf_attr", "license"),
    ("bpf_attr.log_level", "union bpf_attr", "log_level"),
    ("bpf_attr.log_size", "union bpf_attr", "log_size"),
    ("bpf_attr.log_buf", "union bpf_attr", "log_buf"),
    ("bpf_attr.kern_version", "union bpf_attr", "kern_version"),
    ("bpf_attr.prog_flags", "union bpf_attr", "prog_flags"),
    ("bpf_attr.prog_name", "union bpf_attr", "prog_name"),
    ("bpf_attr.prog_ifindex", "union bpf_attr", "prog_ifindex"),
    (
        "bpf_attr.expected_attach_type",
        "union bpf_attr",
        "expected_attach_type",
    ),
    ("bpf_attr.prog_btf_fd", "union bpf_attr", "prog_btf_fd"),
    (
        "bpf_attr.func_info_rec_size",
        "union bpf_attr",
        "func_info_rec_size",
    ),
    ("bpf_attr.func_info", "union bpf_attr", "func_info"),
    ("bpf_attr.func_info_cnt", "union bpf_attr", "func_info_cnt"),
    (
        "bpf_attr.line_info_rec_size",
        "union bpf_attr",
        "line_info_rec_size",
    ),
    ("bpf_attr.line_info", "union bpf_attr", "line_info"),
    ("bpf_attr.line_info_cnt", "union bpf_attr", "line_info_cnt"),
    ("bpf_attr.attach_btf_id", "union bpf_attr", "attach_btf_id"),
    (
        "bpf_attr.attach_prog_fd",
        "union bpf_attr",
        "attach_prog_fd",
    ),
    // BPF_RAW_TRACEPOINT_OPEN
    (
        "bpf_attr.raw_tracepoint.name",
        "union bpf_attr",
        "raw_tracepoint.name",
    ),
    (
        "bpf_attr.raw_tracepoint.prog_fd",
        "union bpf_attr",
        "raw_tracepoint.prog_fd",
    ),
    // BPF_OBJ_PIN, BPF_OBJ_GET
    ("bpf_attr.pathname", "union bpf_attr", "pathname"),
    ("bpf_attr.bpf_fd", "union bpf_attr", "bpf_fd"),
    ("bpf_attr.file_flags", "union bpf_attr", "file_flags"),
    // BPF_OBJ_GET_INFO_BY_FD
    ("bpf_attr.info.bpf_fd", "union bpf_attr", "info.bpf_fd"),
    ("bpf_attr.info.info_len", "union bpf_attr", "info.info_len"),
    ("bpf_attr.info.info", "union bpf_attr", "info.info"),
    // BPF_PROG_QUERY
    (
        "bpf_attr.query.target_fd",
        "union bpf_attr",
        "query.target_fd",
    ),
    (
        "bpf_attr.query.attach_type",
        "union bpf_attr",
        "query.attach_type",
    ),
    (
        "bpf_attr.query.query_flags",
        "union bpf_attr",
        "query.query_flags",
    ),
    (
        "bpf_attr.query.attach_flags",
        "union bpf_attr",
        "query.attach_flags",
    ),
    (
        "bpf_attr.query.prog_ids",
        "union bpf_attr",
        "query.prog_ids",
    ),
    (
        "bpf_attr.query.prog_cnt",
        "union bpf_attr",
        "query.prog_cnt",
    ),
    // BPF_BTF_LOAD
    ("bpf_attr.btf", "union bpf_attr", "btf"),
    ("bpf_attr.btf_log_buf", "union bpf_attr", "btf_log_buf"),
    ("bpf_attr.btf_size", "union bpf_attr", "btf_size"),
    ("bpf_attr.btf_log_size", "union bpf_attr", "btf_log_size"),
    ("bpf_attr.btf_log_level", "union bpf_attr", "btf_log_level"),
    (
        "bpf_attr.btf_log_true_size",
        "union bpf_attr",
        "btf_log_true_size",
    ),
    // BPF_LINK_CREATE
    (
        "bpf_attr.link_create.prog_fd",
        "union bpf_attr",
        "link_create.prog_fd",
    ),
    (
        "bpf_attr.link_create.target_fd",
        "union bpf_attr",
        "link_create.target_fd",
    ),
    (
        "bpf_attr.link_create.attach_type",
        "union bpf_attr",
        "link_create.attach_type",
    ),
    (
        "bpf_attr.link_create.flags",
        "union bpf_attr",
        "link_create.flags",
    ),
    // BPF_OBJ_GET_INFO_BY_FD results
    ("bpf_prog_info.type", "struct bpf_prog_info", "type"),
    ("bpf_prog_info.id", "struct bpf_prog_info", "id"),
    ("bpf_map_info.type", "struct bpf_map_info", "type"),
    ("bpf_map_info.id", "struct bpf_map_info", "id"),
    ("bpf_map_info.key_size", "struct bpf_map_info", "key_size"),
    (
        "bpf_map_info.value_size",
        "struct bpf_map_info",
        "value_size",
    ),
    (
        "bpf_map_info.max_entries",
        "struct bpf_map_info",
        "max_entries",
    ),
    ("bpf_map_info.map_flags", "struct bpf_map_info", "map_flags"),
    ("bpf_map_info.name", "struct bpf_map_info", "name"),
    // perf_event_open(2)
    ("perf_event_attr.type", "struct perf_event_attr", "type"),
    ("perf_event_attr.size", "struct perf_event_attr", "size"),
    ("perf_event_attr.config", "struct perf_event_attr", "config"),
    (
        "perf_event_attr.sample_period",
        "struct perf_event_attr",
        "sample_period",
    ),
    (
        "perf_event_attr.sample_type",
        "struct perf_event_attr",
        "sample_type",
    ),
    (
        "perf_event_attr.read_format",
        "struct perf_event_attr",
        "read_format",
    ),
    (
        "perf_event_attr.wakeup_events",
        "struct perf_event_attr",
        "wakeup_events",
    ),
    (
        "perf_event_attr.bp_type",
        "struct perf_event_attr",
        "bp_type",
    ),
    (
        "perf_event_attr.config1",
        "struct perf_event_attr",
        "config1",
    ),
    (
        "perf_event_attr.kprobe_func",
        "struct perf_event_attr",
        "kprobe_func",
    ),
];

/// Integer constants the loader uses: `(key, C expression)`.
const CONSTANTS: &[(&str, &str)] = &[
    ("sizeof(union bpf_attr)", "sizeof(union bpf_attr)"),
    ("sizeof(struct bpf_prog_info)", "sizeof(struct bpf_prog_info)"),
    ("sizeof(struct bpf_map_info)", "sizeof(struct bpf_map_info)"),
    ("PERF_ATTR_SIZE_VER0", "PERF_ATTR_SIZE_VER0"),
    // The bit-field word of perf_event_attr (disabled, inherit, ...): from the end of
    // read_format to wakeup_events.
    (
        "perf_event_attr.flags@offset",
        "offsetof(struct perf_event_attr, read_format) + sizeof(((struct perf_event_attr *)0)->read_format)",
    ),
    (
        "perf_event_attr.flags@size",
        "offsetof(struct perf_event_attr, wakeup_events) - offsetof(struct perf_event_attr, read_format) - sizeof(((struct perf_event_attr *)0)->read_format)",
    ),
    ("BPF_ANY", "BPF_ANY"),
    ("BPF_NOEXIST", "BPF_NOEXIST"),
    ("BPF_EXIST", "BPF_EXIST"),
    ("BPF_F_RDONLY_PROG", "BPF_F_RDONLY_PROG"),
    ("PERF_TYPE_TRACEPOINT", "PERF_TYPE_TRACEPOINT"),
    ("PERF_FLAG_FD_CLOEXEC", "PERF_FLAG_FD_CLOEXEC"),
    ("PERF_EVENT_IOC_ENABLE", "PERF_EVENT_IOC_ENABLE"),
    ("PERF_EVENT_IOC_SET_BPF", "PERF_EVENT_IOC_SET_BPF"),
];

/// Enums whose every constant is read from the header.
const ENUMS: &[&str] = &[
    "bpf_cmd",
    "bpf_map_type",
    "bpf_prog_type",
    "bpf_attach_type",
];

const LAYOUT_HEADERS: &str =
    "#include <stddef.h>\n#include <stdio.h>\n#include <linux/bpf.h>\n#include <linux/perf_event.h>\n";

/// Writes `$OUT_DIR/kernel_layout.rs`: offsets and sizes of [`FIELDS`], values of [`CONSTANTS`]
/// and of every constant of [`ENUMS`], as the installed `<linux/bpf.h>` and
/// `<linux/perf_event.h>` define them, found by compiling and running a C program with clang.
/// Fields and constants the installed headers lack (older than the loader's structs) are `None`.
/// The unit tests in `src/sys/mod.rs` and `src/uapi.rs` compare the loader's structs and
/// constants with it: an oracle independent of the hand that wrote them.
fn kernel_layout(out: &std::path::Path) {
    use std::process::Command;

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| format!("{}-linux-gnu", std::env::consts::ARCH));
    let include = format!("-I/usr/include/{multiarch}");
    let run = |cmd: &mut Command, what: &str| -> std::process::Output {
        cmd.output().unwrap_or_else(|e| {
            panic!("cannot run {what}: {e}. Install clang and linux-libc-dev with `sudo make deps`")
        })
    };

    // Every constant of ENUMS, named by the preprocessed headers.
    let src = out.join("kernel_layout_names.c");
    std::fs::write(&src, LAYOUT_HEADERS).unwrap();
    let pre = run(
        Command::new(&clang).args(["-E", "-P", &include]).arg(&src),
        "clang -E",
    );
    if !pre.status.success() {
        panic!(
            "{clang} cannot preprocess <linux/bpf.h> and <linux/perf_event.h>: {}; install \
             linux-libc-dev (`sudo make deps`)",
            String::from_utf8_lossy(&pre.stderr)
        );
    }
    let text = String::from_utf8_lossy(&pre.stdout);
    let mut enum_constants: Vec<(&str, String)> = Vec::new();
    for name in ENUMS {
        let start = text
            .find(&format!("enum {name} {{"))
            .unwrap_or_else(|| panic!("no enum {name} in <linux/bpf.h>"));
        let body = &text[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        for item in body.split(',') {
            let ident = item.split('=').next().unwrap().trim();
            if !ident.is_empty() {
                enum_constants.push((name, ident.to_string()));
            }
        }
    }

    // One line per value, so that a line the compiler refuses names what the headers lack.
    let header_lines = LAYOUT_HEADERS.lines().count() + 3;
    let mut lines: Vec<(String, String)> = Vec::new(); // (Rust table entry when absent, C line)
    for (key, ty, member) in FIELDS {
        lines.push((
            format!("    ({key:?}, None),\n"),
            format!("F({key:?}, offsetof({ty}, {member}), sizeof((({ty} *)0)->{member}));"),
        ));
    }
    for (key, expr) in CONSTANTS {
        lines.push((
            format!("    ({key:?}, None),\n"),
            format!("C({key:?}, {expr});"),
        ));
    }
    for (name, ident) in &enum_constants {
        lines.push((String::new(), format!("E({name:?}, {ident:?}, {ident});")));
    }
    let program = |keep: &[bool]| {
        let mut c = String::from(LAYOUT_HEADERS);
        c.push_str("#define F(k, o, s) printf(\"F    (\\\"%s\\\", Some((%llu, %llu))),\\n\", k, (unsigned long long)(o), (unsigned long long)(s))\n");
        c.push_str("#define C(k, v) printf(\"C    (\\\"%s\\\", Some(%llu)),\\n\", k, (unsigned long long)(v))\n");
        c.push_str("#define E(e, k, v) printf(\"E    (\\\"%s\\\", \\\"%s\\\", %llu),\\n\", e, k, (unsigned long long)(v))\n");
        c.push_str("int main(void) {\n");
        for ((_, line), keep) in lines.iter().zip(keep) {
            c.push_str(if *keep { line } else { ";" });
            c.push('\n');
        }
        c.push_str("return 0;\n}\n");
        c
    };
    let src = out.join("kernel_layout.c");
    let mut keep = vec![true; lines.len()];
    loop {
        std::fs::write(&src, program(&keep)).unwrap();
        let check = run(
            Command::new(&clang)
                .args([
                    "-fsyntax-only",
                    "-ferror-limit=0",
                    "-fno-color-diagnostics",
                    "-w",
                ])
                .arg(&include)
                .arg(&src),
            "clang -fsyntax-only",
        );
        if check.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&check.stderr);
        let prefix = format!("{}:", src.display());
        let mut refused = std::collections::BTreeSet::new();
        for line in stderr.lines().filter(|l| l.contains(": error:")) {
            // Items start on the line after `int main(void) {`.
            let Some(i) = line
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(header_lines + 2))
                .filter(|i| *i < lines.len() && keep[*i])
            else {
                panic!(
                    "compiling the kernel layout probe {} failed: {stderr}",
                    src.display()
                );
            };
            refused.insert(i);
        }
        if refused.is_empty() {
            panic!(
                "compiling the kernel layout probe {} failed: {stderr}",
                src.display()
            );
        }
        for i in refused {
            keep[i] = false;
        }
    }
    let exe = out.join("kernel_layout");
    let build = run(
        Command::new(&clang)
            .arg(&include)
            .arg(&src)
            .arg("-o")
            .arg(&exe),
        "clang",
    );
    if !build.status.success() {
        panic!(
            "{clang} failed to build {}: {}",
            src.display(),
            String::from_utf8_lossy(&build.stderr)
        );
    }
    let output = run(&mut Command::new(&exe), "the kernel layout probe");
    assert!(output.status.success(), "{} failed", exe.display());
    let printed = String::from_utf8(output.stdout).unwrap();

    let mut rs = String::from(
        "// Generated by loader/build.rs from the installed <linux/bpf.h> and <linux/perf_event.h>.\n\n",
    );
    rs.push_str(
        "/// `(field, Some((offset, size)))`, `None` when the installed header lacks the field.\n",
    );
    rs.push_str("pub(crate) const FIELDS: &[(&str, Option<(usize, usize)>)] = &[\n");
    let table = |tag: &str, rs: &mut String| {
        for line in printed.lines().filter_map(|l| l.strip_prefix(tag)) {
            rs.push_str(line);
            rs.push('\n');
        }
    };
    table("F", &mut rs);
    for ((absent, _), keep) in lines.iter().zip(&keep).take(FIELDS.len()) {
        if !keep {
            rs.push_str(absent);
        }
    }
    rs.push_str("];\n\n/// `(name, Some(value))`, `None` when the installed headers lack it.\n");
    rs.push_str("pub(crate) const CONSTANTS: &[(&str, Option<u64>)] = &[\n");
    table("C", &mut rs);
    for ((absent, _), keep) in lines
        .iter()
        .zip(&keep)
        .skip(FIELDS.len())
        .take(CONSTANTS.len())
    {
        if !keep {
            rs.push_str(absent);
        }
    }
    rs.push_str(
        "];\n\n/// `(enum, constant, value)` for every constant of the enums the loader mirrors.\n",
    );
    rs.push_str("pub(crate) const ENUM_CONSTANTS: &[(&str, &str, u64)] = &[\n");
    table("E", &mut rs);
    rs.push_str("];\n");
    std::fs::write(out.join("kernel_layout.rs"), rs).unwrap();

    // Rebuild when the headers change (a new linux-libc-dev).
    let deps = run(
        Command::new(&clang).args(["-M", &include]).arg(&src),
        "clang -M",
    );
    for dep in String::from_utf8_lossy(&deps.stdout)
        .split_whitespace()
        .filter(|d| d.ends_with("linux/bpf.h") || d.ends_with("linux/perf_event.h"))
    {
        println!("cargo:rerun-if-changed={dep}");
    }
}
