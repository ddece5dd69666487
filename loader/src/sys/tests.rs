//! Unit tests of the syscall layer: every attr struct's field offsets and sizes against the kernel's
//! UAPI headers, the command numbers and constants, and object-name encoding.

use super::*;

#[test]
fn attr_layouts_match_the_kernel_uapi() {
    // Sizes are asserted at compile time above; these are the field offsets the kernel reads.
    assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
    assert_eq!(std::mem::offset_of!(MapCreateAttr, btf_fd), 48);
    assert_eq!(std::mem::offset_of!(MapCreateAttr, map_extra), 64);
    assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
    assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
    assert_eq!(std::mem::offset_of!(MapBatchAttr, count), 32);
    assert_eq!(std::mem::offset_of!(MapBatchAttr, map_fd), 36);
    assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
    assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
    assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
    assert_eq!(std::mem::offset_of!(ProgQueryAttr, prog_ids), 16);
    assert_eq!(std::mem::offset_of!(ProgQueryAttr, prog_cnt), 24);
    assert_eq!(std::mem::offset_of!(BtfLoadAttr, btf_size), 16);
    assert_eq!(std::mem::offset_of!(MapInfo, name), 24);
    assert_eq!(std::mem::offset_of!(PerfEventAttr, flags), 40);
    assert_eq!(std::mem::offset_of!(PerfEventAttr, config1), 56);
}

/// `(offset, size)` of `$field` in `$ty`.
macro_rules! field {
    ($ty:ty, $field:ident) => {{
        fn size_of_field<T, F>(_: fn(&T) -> &F) -> usize {
            size_of::<F>()
        }
        (
            std::mem::offset_of!($ty, $field),
            size_of_field(|s: &$ty| &s.$field),
        )
    }};
}

/// Checks the structs above against `<linux/bpf.h>` and `<linux/perf_event.h>` as clang
/// reads them (`$OUT_DIR/kernel_layout.rs`, written by build.rs): every field's offset and
/// size, each struct no longer than the kernel's, and the constants. Fields newer than the
/// installed header are skipped.
#[test]
// c_ulong is u64 here, u32 on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn attr_structs_match_the_installed_uapi_headers() {
    use crate::kernel_layout::{constant, field};
    let fields: &[(&str, (usize, usize))] = &[
        ("bpf_attr.map_type", field!(MapCreateAttr, map_type)),
        ("bpf_attr.key_size", field!(MapCreateAttr, key_size)),
        ("bpf_attr.value_size", field!(MapCreateAttr, value_size)),
        ("bpf_attr.max_entries", field!(MapCreateAttr, max_entries)),
        ("bpf_attr.map_flags", field!(MapCreateAttr, map_flags)),
        ("bpf_attr.inner_map_fd", field!(MapCreateAttr, inner_map_fd)),
        ("bpf_attr.numa_node", field!(MapCreateAttr, numa_node)),
        ("bpf_attr.map_name", field!(MapCreateAttr, map_name)),
        ("bpf_attr.map_ifindex", field!(MapCreateAttr, map_ifindex)),
        ("bpf_attr.btf_fd", field!(MapCreateAttr, btf_fd)),
        (
            "bpf_attr.btf_key_type_id",
            field!(MapCreateAttr, btf_key_type_id),
        ),
        (
            "bpf_attr.btf_value_type_id",
            field!(MapCreateAttr, btf_value_type_id),
        ),
        (
            "bpf_attr.btf_vmlinux_value_type_id",
            field!(MapCreateAttr, btf_vmlinux_value_type_id),
        ),
        ("bpf_attr.map_extra", field!(MapCreateAttr, map_extra)),
        ("bpf_attr.map_fd", field!(MapElemAttr, map_fd)),
        ("bpf_attr.key", field!(MapElemAttr, key)),
        ("bpf_attr.value", field!(MapElemAttr, value_or_next_key)),
        ("bpf_attr.next_key", field!(MapElemAttr, value_or_next_key)),
        ("bpf_attr.flags", field!(MapElemAttr, flags)),
        ("bpf_attr.map_fd", field!(MapFreezeAttr, map_fd)),
        ("bpf_attr.batch.in_batch", field!(MapBatchAttr, in_batch)),
        ("bpf_attr.batch.out_batch", field!(MapBatchAttr, out_batch)),
        ("bpf_attr.batch.keys", field!(MapBatchAttr, keys)),
        ("bpf_attr.batch.values", field!(MapBatchAttr, values)),
        ("bpf_attr.batch.count", field!(MapBatchAttr, count)),
        ("bpf_attr.batch.map_fd", field!(MapBatchAttr, map_fd)),
        (
            "bpf_attr.batch.elem_flags",
            field!(MapBatchAttr, elem_flags),
        ),
        ("bpf_attr.batch.flags", field!(MapBatchAttr, flags)),
        ("bpf_attr.prog_type", field!(ProgLoadAttr, prog_type)),
        ("bpf_attr.insn_cnt", field!(ProgLoadAttr, insn_cnt)),
        ("bpf_attr.insns", field!(ProgLoadAttr, insns)),
        ("bpf_attr.license", field!(ProgLoadAttr, license)),
        ("bpf_attr.log_level", field!(ProgLoadAttr, log_level)),
        ("bpf_attr.log_size", field!(ProgLoadAttr, log_size)),
        ("bpf_attr.log_buf", field!(ProgLoadAttr, log_buf)),
        ("bpf_attr.kern_version", field!(ProgLoadAttr, kern_version)),
        ("bpf_attr.prog_flags", field!(ProgLoadAttr, prog_flags)),
        ("bpf_attr.prog_name", field!(ProgLoadAttr, prog_name)),
        ("bpf_attr.prog_ifindex", field!(ProgLoadAttr, prog_ifindex)),
        (
            "bpf_attr.expected_attach_type",
            field!(ProgLoadAttr, expected_attach_type),
        ),
        ("bpf_attr.prog_btf_fd", field!(ProgLoadAttr, prog_btf_fd)),
        (
            "bpf_attr.func_info_rec_size",
            field!(ProgLoadAttr, func_info_rec_size),
        ),
        ("bpf_attr.func_info", field!(ProgLoadAttr, func_info)),
        (
            "bpf_attr.func_info_cnt",
            field!(ProgLoadAttr, func_info_cnt),
        ),
        (
            "bpf_attr.line_info_rec_size",
            field!(ProgLoadAttr, line_info_rec_size),
        ),
        ("bpf_attr.line_info", field!(ProgLoadAttr, line_info)),
        (
            "bpf_attr.line_info_cnt",
            field!(ProgLoadAttr, line_info_cnt),
        ),
        (
            "bpf_attr.attach_btf_id",
            field!(ProgLoadAttr, attach_btf_id),
        ),
        (
            "bpf_attr.attach_prog_fd",
            field!(ProgLoadAttr, attach_prog_fd),
        ),
        (
            "bpf_attr.raw_tracepoint.name",
            field!(RawTracepointAttr, name),
        ),
        (
            "bpf_attr.raw_tracepoint.prog_fd",
            field!(RawTracepointAttr, prog_fd),
        ),
        ("bpf_attr.pathname", field!(ObjAttr, pathname)),
        ("bpf_attr.bpf_fd", field!(ObjAttr, bpf_fd)),
        ("bpf_attr.file_flags", field!(ObjAttr, file_flags)),
        ("bpf_attr.info.bpf_fd", field!(InfoAttr, bpf_fd)),
        ("bpf_attr.info.info_len", field!(InfoAttr, info_len)),
        ("bpf_attr.info.info", field!(InfoAttr, info)),
        ("bpf_attr.query.target_fd", field!(ProgQueryAttr, target_fd)),
        (
            "bpf_attr.query.attach_type",
            field!(ProgQueryAttr, attach_type),
        ),
        (
            "bpf_attr.query.query_flags",
            field!(ProgQueryAttr, query_flags),
        ),
        (
            "bpf_attr.query.attach_flags",
            field!(ProgQueryAttr, attach_flags),
        ),
        ("bpf_attr.query.prog_ids", field!(ProgQueryAttr, prog_ids)),
        ("bpf_attr.query.prog_cnt", field!(ProgQueryAttr, prog_cnt)),
        ("bpf_attr.btf", field!(BtfLoadAttr, btf)),
        ("bpf_attr.btf_log_buf", field!(BtfLoadAttr, btf_log_buf)),
        ("bpf_attr.btf_size", field!(BtfLoadAttr, btf_size)),
        ("bpf_attr.btf_log_size", field!(BtfLoadAttr, btf_log_size)),
        ("bpf_attr.btf_log_level", field!(BtfLoadAttr, btf_log_level)),
        (
            "bpf_attr.btf_log_true_size",
            field!(BtfLoadAttr, btf_log_true_size),
        ),
        (
            "bpf_attr.link_create.prog_fd",
            field!(LinkCreateAttr, prog_fd),
        ),
        (
            "bpf_attr.link_create.target_fd",
            field!(LinkCreateAttr, target_fd),
        ),
        (
            "bpf_attr.link_create.attach_type",
            field!(LinkCreateAttr, attach_type),
        ),
        ("bpf_attr.link_create.flags", field!(LinkCreateAttr, flags)),
        ("bpf_prog_info.type", field!(ProgInfo, prog_type)),
        ("bpf_prog_info.id", field!(ProgInfo, id)),
        ("bpf_map_info.type", field!(MapInfo, map_type)),
        ("bpf_map_info.id", field!(MapInfo, id)),
        ("bpf_map_info.key_size", field!(MapInfo, key_size)),
        ("bpf_map_info.value_size", field!(MapInfo, value_size)),
        ("bpf_map_info.max_entries", field!(MapInfo, max_entries)),
        ("bpf_map_info.map_flags", field!(MapInfo, map_flags)),
        ("bpf_map_info.name", field!(MapInfo, name)),
        ("perf_event_attr.type", field!(PerfEventAttr, type_)),
        ("perf_event_attr.size", field!(PerfEventAttr, size)),
        ("perf_event_attr.config", field!(PerfEventAttr, config)),
        (
            "perf_event_attr.sample_period",
            field!(PerfEventAttr, sample_period),
        ),
        (
            "perf_event_attr.sample_type",
            field!(PerfEventAttr, sample_type),
        ),
        (
            "perf_event_attr.read_format",
            field!(PerfEventAttr, read_format),
        ),
        (
            "perf_event_attr.wakeup_events",
            field!(PerfEventAttr, wakeup_events),
        ),
        ("perf_event_attr.bp_type", field!(PerfEventAttr, bp_type)),
        ("perf_event_attr.config1", field!(PerfEventAttr, config1)),
        // The kprobe PMU reads the function name's address from the union with config1.
        (
            "perf_event_attr.kprobe_func",
            field!(PerfEventAttr, config1),
        ),
    ];
    // Only fields newer than Linux 5.10 (the oldest supported) may be missing from the header.
    let newer = ["bpf_attr.map_extra", "bpf_attr.btf_log_true_size"];
    for (key, loader) in fields {
        match field(key) {
            Some(kernel) => {
                assert_eq!(
                    *loader, kernel,
                    "{key}: (offset, size) in the loader vs the header"
                )
            }
            None => assert!(newer.contains(key), "{key} is missing from <linux/bpf.h>"),
        }
    }
    // The bit-field word of perf_event_attr (disabled, inherit, ...) has no name in C.
    let flags = field!(PerfEventAttr, flags);
    assert_eq!(
        (flags.0 as u64, flags.1 as u64),
        (
            constant("perf_event_attr.flags@offset").unwrap(),
            constant("perf_event_attr.flags@size").unwrap()
        )
    );

    // Each struct is a prefix of the kernel's: no longer than it.
    let attr = constant("sizeof(union bpf_attr)").unwrap() as usize;
    for (name, size) in [
        ("MapCreateAttr", size_of::<MapCreateAttr>()),
        ("MapElemAttr", size_of::<MapElemAttr>()),
        ("MapBatchAttr", size_of::<MapBatchAttr>()),
        ("MapFreezeAttr", size_of::<MapFreezeAttr>()),
        ("ProgLoadAttr", size_of::<ProgLoadAttr>()),
        ("ObjAttr", size_of::<ObjAttr>()),
        ("InfoAttr", size_of::<InfoAttr>()),
        ("ProgQueryAttr", size_of::<ProgQueryAttr>()),
        ("BtfLoadAttr", size_of::<BtfLoadAttr>()),
        ("LinkCreateAttr", size_of::<LinkCreateAttr>()),
        ("RawTracepointAttr", size_of::<RawTracepointAttr>()),
    ] {
        assert!(
            size <= attr,
            "{name} is {size} bytes, union bpf_attr {attr}"
        );
    }
    let info = |key| constant(key).unwrap() as usize;
    assert!(size_of::<ProgInfo>() <= info("sizeof(struct bpf_prog_info)"));
    assert!(size_of::<MapInfo>() <= info("sizeof(struct bpf_map_info)"));
    assert_eq!(size_of::<PerfEventAttr>(), info("PERF_ATTR_SIZE_VER0"));

    // Commands and constants.
    for (name, value) in [
        ("BPF_MAP_CREATE", BPF_MAP_CREATE),
        ("BPF_MAP_LOOKUP_ELEM", BPF_MAP_LOOKUP_ELEM),
        ("BPF_MAP_UPDATE_ELEM", BPF_MAP_UPDATE_ELEM),
        ("BPF_MAP_DELETE_ELEM", BPF_MAP_DELETE_ELEM),
        ("BPF_MAP_GET_NEXT_KEY", BPF_MAP_GET_NEXT_KEY),
        ("BPF_PROG_LOAD", BPF_PROG_LOAD),
        ("BPF_OBJ_PIN", BPF_OBJ_PIN),
        ("BPF_OBJ_GET", BPF_OBJ_GET),
        ("BPF_RAW_TRACEPOINT_OPEN", BPF_RAW_TRACEPOINT_OPEN),
        ("BPF_OBJ_GET_INFO_BY_FD", BPF_OBJ_GET_INFO_BY_FD),
        ("BPF_PROG_QUERY", BPF_PROG_QUERY),
        ("BPF_BTF_LOAD", BPF_BTF_LOAD),
        ("BPF_MAP_FREEZE", BPF_MAP_FREEZE),
        ("BPF_MAP_LOOKUP_BATCH", BPF_MAP_LOOKUP_BATCH),
        ("BPF_LINK_CREATE", BPF_LINK_CREATE),
    ] {
        assert_eq!(
            crate::kernel_layout::enum_constant(name),
            Some(u64::from(value)),
            "{name}"
        );
    }
    for (name, value) in [
        ("BPF_ANY", crate::BPF_ANY),
        ("BPF_NOEXIST", crate::BPF_NOEXIST),
        ("BPF_EXIST", crate::BPF_EXIST),
        (
            "BPF_F_RDONLY_PROG",
            u64::from(crate::elf::BPF_F_RDONLY_PROG),
        ),
        ("PERF_TYPE_TRACEPOINT", u64::from(PERF_TYPE_TRACEPOINT)),
        ("PERF_FLAG_FD_CLOEXEC", PERF_FLAG_FD_CLOEXEC as u64),
        ("PERF_EVENT_IOC_ENABLE", PERF_EVENT_IOC_ENABLE as u64),
        ("PERF_EVENT_IOC_SET_BPF", PERF_EVENT_IOC_SET_BPF as u64),
    ] {
        assert_eq!(constant(name), Some(value), "{name}");
    }
}

#[test]
fn object_names_are_truncated_and_sanitized() {
    assert_eq!(&object_name("counters")[..9], b"counters\0");
    let long = object_name("a_very_long_program_name");
    assert_eq!(&long[..15], b"a_very_long_pro");
    assert_eq!(long[15], 0);
    assert_eq!(&object_name("tp/x-y")[..7], b"tp_x_y\0");
    assert_eq!(&object_name(".rodata")[..8], b".rodata\0");
}
