//! Parser tests on the objects build.rs compiles from `bpf-src/` and on crafted bad inputs.

use super::*;
use crate::reloc::{CALL, LD_IMM64, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
use crate::uapi::{AttachType, MapType, ProgType};

macro_rules! bpf_object {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o")).as_slice()
    };
}

const SKB: &[u8] = bpf_object!("skb_counter");
const FEATURES: &[u8] = bpf_object!("features");
const PODNET: &[u8] = bpf_object!("podnet");
const OPENAT: &[u8] = bpf_object!("openat_counter");
const SOCK: &[u8] = bpf_object!("sock_counter");

/// File offset and size of section `name`.
fn section_range(data: &[u8], name: &str) -> (usize, usize) {
    let header = FileHeader64::<LE>::parse(data).unwrap();
    let sections = header.sections(LE, data).unwrap();
    for sh in sections.iter() {
        if sections.section_name(LE, sh).unwrap() == name.as_bytes() {
            return (sh.sh_offset(LE) as usize, sh.sh_size(LE) as usize);
        }
    }
    panic!("no section {name}");
}

fn patched(data: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v[at..at + bytes.len()].copy_from_slice(bytes);
    v
}

#[test]
fn parses_the_skb_counter_object() {
    let spec = ObjectSpec::parse(SKB).unwrap();
    assert_eq!(spec.license(), "GPL");
    assert_eq!(spec.maps().len(), 1);
    let m = spec.map("skb_counts").unwrap();
    assert_eq!(
        (
            m.map_type,
            m.key_size,
            m.value_size,
            m.max_entries,
            m.flags,
            m.kind
        ),
        (MapType::PercpuArray, 4, 16, 2, 0, MapKind::Btf)
    );
    let names: Vec<_> = spec
        .programs()
        .iter()
        .map(|p| (p.name.as_str(), p.kind.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("count_egress", ProgramKind::CgroupSkbEgress),
            ("count_ingress", ProgramKind::CgroupSkbIngress)
        ]
    );
    // The static count_udp in .text is appended to each program once, and called at its start.
    let text = spec
        .functions
        .iter()
        .find(|f| f.name == "count_udp")
        .unwrap();
    let prog = &spec.functions[spec.program("count_egress").unwrap().function];
    let insns = spec.relocated_instructions("count_egress", &[42]).unwrap();
    assert_eq!(insns.len(), prog.insns.len() + text.insns.len());
    let appended = &insns[prog.insns.len()..];
    assert!(appended
        .iter()
        .zip(&text.insns)
        .all(|(a, b)| (a.code, a.off, a.dst_reg()) == (b.code, b.off, b.dst_reg())));
    let calls: Vec<usize> = (0..prog.insns.len())
        .filter(|&i| insns[i].is_pseudo_call())
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0] as i64 + 1 + i64::from(insns[calls[0]].imm),
        prog.insns.len() as i64
    );
    let maprefs: Vec<&Insn> = insns
        .iter()
        .filter(|i| i.code == LD_IMM64 && i.src_reg() == PSEUDO_MAP_FD)
        .collect();
    assert_eq!(maprefs.len(), 1);
    assert_eq!(maprefs[0].imm, 42);
}

#[test]
fn parses_every_shape_in_the_features_object() {
    let spec = ObjectSpec::parse(FEATURES).unwrap();
    assert_eq!(spec.license(), "Dual BSD/GPL");
    let progs: Vec<_> = spec
        .programs()
        .iter()
        .map(|p| (p.name.as_str(), p.section.as_str()))
        .collect();
    assert_eq!(
        progs,
        vec![
            ("ops_one", "sockops"),
            ("ops_two", "sockops"),
            ("on_exec", "tp/sched/sched_process_exec")
        ]
    );
    assert_eq!(
        spec.program("on_exec").unwrap().kind,
        ProgramKind::Tracepoint {
            category: "sched".into(),
            event: "sched_process_exec".into()
        }
    );
    let summary: Vec<_> = spec
        .maps()
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.map_type,
                m.key_size,
                m.value_size,
                m.max_entries,
                m.flags,
                m.kind,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("big_hash", MapType::Hash, 8, 8, 10000, 1, MapKind::Btf),
            (
                "percpu_hash",
                MapType::PercpuHash,
                8,
                12,
                64,
                0,
                MapKind::Btf
            ),
            (
                ".rodata",
                MapType::Array,
                4,
                16,
                1,
                BPF_F_RDONLY_PROG,
                MapKind::Rodata
            ),
            (".data", MapType::Array, 4, 8, 1, 0, MapKind::Data),
            (".bss", MapType::Array, 4, 8, 1, 0, MapKind::Bss),
        ]
    );
    let rodata = spec.map(".rodata").unwrap().data.clone().unwrap();
    assert_eq!(&rodata[..4], &7u32.to_le_bytes());
    assert_eq!(&rodata[8..], &9u64.to_le_bytes());
    assert_eq!(
        spec.map(".data").unwrap().data.as_deref(),
        Some(&3u64.to_le_bytes()[..])
    );
    assert_eq!(
        spec.map(".bss").unwrap().data.as_deref(),
        Some(&[0u8; 8][..])
    );
    let g = spec.global("config_b").unwrap();
    assert_eq!((g.map.as_str(), g.offset, g.size), (".rodata", 8, 8));
    assert_eq!(spec.globals().len(), 4);

    // ops_two calls the global add_global (relocation), which calls the static add_static (no
    // relocation: same section); both appended once, in call order.
    let fds = [10, 11, 12, 13, 14];
    let ops_two = spec.relocated_instructions("ops_two", &fds).unwrap();
    let len = |n: &str| {
        spec.functions
            .iter()
            .find(|f| f.name == n)
            .unwrap()
            .insns
            .len()
    };
    assert_eq!(
        ops_two.len(),
        len("ops_two") + len("add_global") + len("add_static")
    );
    let targets: Vec<i64> = ops_two
        .iter()
        .enumerate()
        .filter(|(_, i)| i.is_pseudo_call())
        .map(|(at, i)| at as i64 + 1 + i64::from(i.imm))
        .collect();
    let (g_start, s_start) = (
        len("ops_two") as i64,
        (len("ops_two") + len("add_global")) as i64,
    );
    assert_eq!(targets, vec![g_start, s_start]);
    // .bss store in ops_two and the .rodata read in add_static are map-value references.
    let values: Vec<(i32, i32)> = ops_two
        .windows(2)
        .filter(|w| w[0].code == LD_IMM64 && w[0].src_reg() == PSEUDO_MAP_VALUE)
        .map(|w| (w[0].imm, w[1].imm))
        .collect();
    assert_eq!(values, vec![(14, 0), (12, 0)]);

    // on_exec calls add_static through the .text section symbol; reads config_b at offset 8.
    let on_exec = spec.relocated_instructions("on_exec", &fds).unwrap();
    assert_eq!(on_exec.len(), len("on_exec") + len("add_static"));
    let values: Vec<(i32, i32)> = on_exec
        .windows(2)
        .filter(|w| w[0].code == LD_IMM64 && w[0].src_reg() == PSEUDO_MAP_VALUE)
        .map(|w| (w[0].imm, w[1].imm))
        .collect();
    assert_eq!(values, vec![(12, 8), (13, 0), (12, 0)]);
}

#[test]
fn parses_podnets_own_object() {
    let spec = ObjectSpec::parse(PODNET).unwrap();
    let kinds: Vec<ProgramKind> = spec.programs().iter().map(|p| p.kind.clone()).collect();
    for expected in [
        ProgramKind::CgroupSkbIngress,
        ProgramKind::CgroupSkbEgress,
        ProgramKind::CgroupSockCreate,
        ProgramKind::CgroupSockRelease,
        ProgramKind::SockOps,
    ] {
        assert!(
            kinds.contains(&expected),
            "podnet.bpf.c has no {expected:?} program"
        );
    }
    assert!(kinds
        .iter()
        .any(|k| matches!(k, ProgramKind::Tracepoint { category, .. } if category == "syscalls")));
    let counters = spec.map("counters").unwrap();
    // struct podnet_counters: every field a u64 (bpf-src/podnet.h).
    assert_eq!(
        (
            counters.map_type,
            counters.key_size,
            counters.value_size % 8
        ),
        (MapType::PercpuHash, 8, 0)
    );
    for p in spec.programs() {
        spec.relocated_instructions(&p.name, &vec![3; spec.maps().len()])
            .unwrap();
    }
    if spec.maps().iter().any(|m| m.needs_btf()) {
        assert!(
            spec.kernel_btf.is_some(),
            "podnet's BTF must be loadable for its storage maps"
        );
    }
}

#[test]
fn parses_tracepoint_and_sock_objects() {
    let spec = ObjectSpec::parse(OPENAT).unwrap();
    let p = spec.program("count_openat").unwrap();
    assert_eq!(
        p.kind,
        ProgramKind::Tracepoint {
            category: "syscalls".into(),
            event: "sys_enter_openat".into()
        }
    );
    assert_eq!(p.kind.prog_type(), ProgType::Tracepoint);
    assert_eq!(p.kind.attach_type(), AttachType::PerfEvent);
    assert_eq!(spec.global("target_cgroup_id").unwrap().map, ".rodata");
    assert_eq!(spec.global("openat_calls").unwrap().map, ".bss");
    let spec = ObjectSpec::parse(SOCK).unwrap();
    let m = spec.map("sock_counts").unwrap();
    assert_eq!(
        (m.map_type, m.key_size, m.value_size, m.max_entries),
        (MapType::Array, 4, 8, 2)
    );
    assert_eq!(
        spec.program("count_release")
            .unwrap()
            .kind
            .expected_attach_type(),
        Some(AttachType::CgroupInetSockRelease)
    );
}

#[test]
fn set_global_and_map_mut_change_the_spec() {
    let mut spec = ObjectSpec::parse(FEATURES).unwrap();
    spec.set_global("config_b", &77u64.to_le_bytes()).unwrap();
    spec.set_global("config_a", &5u32.to_le_bytes()).unwrap();
    let rodata = spec.map(".rodata").unwrap().data.clone().unwrap();
    assert_eq!(&rodata[..4], &5u32.to_le_bytes());
    assert_eq!(&rodata[8..16], &77u64.to_le_bytes());
    assert!(matches!(
        spec.set_global("config_b", &[1, 2, 3]),
        Err(Error::GlobalSize {
            expected: 8,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        spec.set_global("nope", &[0]),
        Err(Error::UnknownGlobal(_))
    ));
    spec.map_mut("big_hash").unwrap().max_entries = 123;
    assert_eq!(spec.map("big_hash").unwrap().max_entries, 123);
    assert!(matches!(spec.map_mut("nope"), Err(Error::UnknownMap(_))));
    assert!(matches!(
        spec.program("nope"),
        Err(Error::UnknownProgram(_))
    ));
}

#[test]
fn section_names_map_to_program_kinds() {
    assert_eq!(
        ProgramKind::from_section("sockops"),
        Some(ProgramKind::SockOps)
    );
    assert_eq!(
        ProgramKind::from_section("cgroup/sock_create")
            .unwrap()
            .prog_type(),
        ProgType::CgroupSock
    );
    assert_eq!(
        ProgramKind::from_section("tp/syscalls/sys_exit_openat"),
        Some(ProgramKind::Tracepoint {
            category: "syscalls".into(),
            event: "sys_exit_openat".into()
        })
    );
    assert_eq!(
        ProgramKind::from_section("kretprobe/do_sys_openat2"),
        Some(ProgramKind::Kprobe {
            function: "do_sys_openat2".into(),
            retprobe: true
        })
    );
    let kprobe = ProgramKind::from_section("kprobe/do_sys_openat2").unwrap();
    assert_eq!(
        kprobe,
        ProgramKind::Kprobe {
            function: "do_sys_openat2".into(),
            retprobe: false
        }
    );
    assert_eq!(kprobe.prog_type(), ProgType::Kprobe);
    assert_eq!(kprobe.expected_attach_type(), None);
    assert!(!kprobe.is_cgroup());
    for bad in [
        "xdp",
        "kprobe/",
        "kretprobe/",
        "kprobe/a/b",
        "kprobes/x",
        "tracepoint/",
        "tracepoint/a",
        "tp//b",
        "tp/a/",
        "tp/a/b/c",
        "cgroup_skb/other",
        ".text",
    ] {
        assert_eq!(ProgramKind::from_section(bad), None, "{bad}");
    }
}

#[test]
fn kernel_btf_has_data_sections_filled_in() {
    let spec = ObjectSpec::parse(FEATURES).unwrap();
    let fixed = crate::btf::Btf::parse(spec.kernel_btf.as_ref().unwrap()).unwrap();
    let (size, vars) = fixed.datasec_layout(".maps").unwrap().unwrap();
    assert_eq!(size as usize, section_range(FEATURES, ".maps").1);
    assert_eq!(
        vars,
        vec![("big_hash".to_string(), 0), ("percpu_hash".to_string(), 40)]
    );
    let (size, vars) = fixed.datasec_layout(".rodata").unwrap().unwrap();
    assert_eq!(
        (size, vars),
        (
            16,
            vec![("config_a".to_string(), 0), ("config_b".to_string(), 8)]
        )
    );
}

#[test]
fn wrong_kinds_of_file_get_their_own_errors() {
    assert!(matches!(ObjectSpec::parse(b""), Err(Error::NotElf)));
    assert!(matches!(
        ObjectSpec::parse(b"#!/bin/sh\necho hi\n"),
        Err(Error::NotElf)
    ));
    assert!(matches!(
        ObjectSpec::parse(&patched(SKB, 4, &[1])),
        Err(Error::Not64Bit)
    ));
    assert!(matches!(
        ObjectSpec::parse(&patched(SKB, 5, &[2])),
        Err(Error::BigEndian)
    ));
    assert!(matches!(
        ObjectSpec::parse(&patched(SKB, 18, &62u16.to_le_bytes())),
        Err(Error::WrongMachine(62))
    ));
    assert!(matches!(
        ObjectSpec::parse(&patched(SKB, 16, &2u16.to_le_bytes())),
        Err(Error::NotRelocatable(2))
    ));
    assert!(matches!(
        ObjectSpec::parse(&patched(SKB, 4, &[9])),
        Err(Error::Elf(_))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    for data in [SKB, FEATURES] {
        for len in 0..data.len() {
            assert!(
                ObjectSpec::parse(&data[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }
}

#[test]
fn corrupt_btf_in_an_object_is_an_error() {
    let (off, size) = section_range(FEATURES, ".BTF");
    assert!(
        matches!(ObjectSpec::parse(&patched(FEATURES, off, &[0, 0])), Err(Error::Btf(m)) if m.contains("magic"))
    );
    // Type section length past the end of the section.
    let bad_len = patched(FEATURES, off + 12, &(size as u32).to_le_bytes());
    assert!(matches!(ObjectSpec::parse(&bad_len), Err(Error::Btf(_))));
    // A type id far out of range in the first type (an int has none; find a pointer instead).
    let btf = crate::btf::Btf::parse(&FEATURES[off..off + size]).unwrap();
    assert!(!btf.map_defs().unwrap().is_empty());
}

/// (offset of the first Rel64 of `.rel<section>`, number of entries).
fn rels(data: &[u8], section: &str) -> (usize, usize) {
    let (off, size) = section_range(data, &format!(".rel{section}"));
    (off, size / 16)
}

#[test]
fn bad_relocations_are_errors() {
    let (off, n) = rels(FEATURES, "sockops");
    assert_eq!(n, 3);
    // Offset past the end of the section.
    let r = ObjectSpec::parse(&patched(FEATURES, off, &0x10000u64.to_le_bytes()));
    assert!(
        matches!(&r, Err(Error::Relocation { reason, .. }) if reason.contains("out of range")),
        "{r:?}"
    );
    // Misaligned offset.
    assert!(matches!(
        ObjectSpec::parse(&patched(FEATURES, off, &3u64.to_le_bytes())),
        Err(Error::Relocation { .. })
    ));
    // Unknown symbol index (r_info high half).
    assert!(matches!(
        ObjectSpec::parse(&patched(FEATURES, off + 12, &9999u32.to_le_bytes())),
        Err(Error::Relocation { .. })
    ));
    // Unsupported relocation type (r_info low half).
    assert!(matches!(
        ObjectSpec::parse(&patched(FEATURES, off + 8, &7u32.to_le_bytes())),
        Err(Error::Relocation { .. })
    ));
    // A call relocation that lands inside a function instead of at its start: add_global's
    // relocation (the second) on `call -1`; make it `call 2`.
    let (text_off, _) = section_range(FEATURES, "sockops");
    let call_off = u64::from_le_bytes(FEATURES[off + 16..off + 24].try_into().unwrap()) as usize;
    assert_eq!(FEATURES[text_off + call_off], CALL);
    let bad_call = patched(FEATURES, text_off + call_off + 4, &2i32.to_le_bytes());
    assert!(
        matches!(ObjectSpec::parse(&bad_call), Err(Error::Relocation { reason, .. }) if reason.contains("not the start"))
    );
}

#[test]
fn map_definitions_missing_fields_are_errors() {
    let no_type = ObjectSpec::parse(bpf_object!("map_no_type"));
    assert!(
        matches!(&no_type, Err(Error::MapDefinition { map, reason }) if map == "no_type" && reason.contains("type"))
    );
    let no_max = ObjectSpec::parse(bpf_object!("map_no_max_entries"));
    assert!(
        matches!(&no_max, Err(Error::MapDefinition { map, reason }) if map == "no_max" && reason.contains("max_entries"))
    );
}

#[test]
fn unsupported_program_sections_are_errors() {
    // Rename the `sockops` section to `sockopz` in the section name table.
    let header = FileHeader64::<LE>::parse(FEATURES).unwrap();
    let sections = header.sections(LE, FEATURES).unwrap();
    let sh = sections
        .iter()
        .find(|sh| sections.section_name(LE, sh).unwrap() == b"sockops")
        .unwrap();
    let strtab = sections
        .section(SectionIndex(header.e_shstrndx(LE).0 as usize))
        .unwrap();
    let at = strtab.sh_offset(LE) as usize + sh.sh_name(LE) as usize;
    let renamed = patched(FEATURES, at + 6, b"z");
    assert!(
        matches!(ObjectSpec::parse(&renamed), Err(Error::UnsupportedSection(s)) if s == "sockopz")
    );
}
