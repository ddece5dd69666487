//! Tests of the BTF reader on hand-built blobs.

use super::builder::BtfBuilder;
use super::*;

/// A `.maps` section with one map built from `members(builder, int_type_id)`.
fn one_map(members: impl Fn(&mut BtfBuilder, u32) -> Vec<(&'static str, u32)>) -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4);
    let m = members(&mut b, int);
    let st = b.strukt("", 32, &m);
    let var = b.var("my_map", st);
    b.datasec(".maps", &[var]);
    b.build()
}

#[test]
fn reads_a_hand_built_map_definition() {
    let blob = one_map(|b, int| {
        let u64t = b.int("unsigned long long", 8);
        let td = b.typedef("u64_t", u64t);
        let val = b.strukt("val", 24, &[]);
        vec![
            ("type", b.uint(int, 5)),
            ("max_entries", b.uint(int, 100)),
            ("map_flags", b.uint(int, 1)),
            ("key", b.ptr(td)),
            ("value", b.ptr(val)),
        ]
    });
    let defs = Btf::parse(&blob).unwrap().map_defs().unwrap();
    assert_eq!(defs.len(), 1);
    let d = &defs[0];
    assert_eq!(
        (
            d.name.as_str(),
            d.map_type,
            d.max_entries,
            d.flags,
            d.key_size,
            d.value_size
        ),
        ("my_map", Some(5), Some(100), 1, Some(8), Some(24))
    );
}

#[test]
fn bad_headers_are_errors() {
    let good = one_map(|b, int| vec![("type", b.uint(int, 1))]);
    assert!(Btf::parse(&good).is_ok());
    let mut bad_magic = good.clone();
    bad_magic[0] = 0xeb; // big-endian BTF
    bad_magic[1] = 0x9f;
    assert!(matches!(Btf::parse(&bad_magic), Err(Error::Btf(m)) if m.contains("magic")));
    let mut bad_version = good.clone();
    bad_version[2] = 2;
    assert!(Btf::parse(&bad_version).is_err());
    let mut bad_hdr_len = good.clone();
    bad_hdr_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Btf::parse(&bad_hdr_len).is_err());
    let mut bad_type_len = good.clone();
    bad_type_len[12..16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(Btf::parse(&bad_type_len).is_err());
    let mut bad_str = good.clone();
    bad_str[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Btf::parse(&bad_str).is_err());
    for len in 0..good.len() {
        assert!(
            Btf::parse(&good[..len]).is_err(),
            "truncated to {len} bytes parsed"
        );
    }
}

#[test]
fn bad_type_ids_and_kinds_are_errors() {
    let mut b = BtfBuilder::new();
    b.ptr(99);
    assert!(matches!(Btf::parse(&b.build()), Err(Error::Btf(m)) if m.contains("99")));
    let mut b = BtfBuilder::new();
    b.raw("", 31, 0, 0, &[]);
    assert!(matches!(Btf::parse(&b.build()), Err(Error::Btf(m)) if m.contains("unknown kind")));
    // A struct claiming more members than there are bytes.
    let mut b = BtfBuilder::new();
    b.raw("s", KIND_STRUCT, 1000, 8, &[]);
    assert!(Btf::parse(&b.build()).is_err());
    // A name offset past the string table.
    let mut b = BtfBuilder::new();
    b.int("x", 4);
    let mut blob = b.build();
    blob[24..28].copy_from_slice(&1000u32.to_le_bytes());
    assert!(Btf::parse(&blob).is_err());
}

#[test]
fn type_loops_are_errors() {
    // typedef a -> typedef b -> typedef a, used as a key type.
    let blob = one_map(|b, int| {
        let a_id = b.count + 1;
        let _a = b.typedef("a", a_id + 1);
        let _b = b.typedef("b", a_id);
        vec![
            ("type", b.uint(int, 1)),
            ("max_entries", b.uint(int, 1)),
            ("key", b.ptr(a_id)),
        ]
    });
    let btf = Btf::parse(&blob).unwrap();
    assert!(
        matches!(btf.map_defs(), Err(Error::MapDefinition { reason, .. }) if reason.contains("loop"))
    );
    // An array of itself.
    let mut b = BtfBuilder::new();
    let arr = b.array(1, 1, 2);
    assert!(
        matches!(Btf::parse(&b.build()).unwrap().size_of(arr), Err(Error::Btf(m)) if m.contains("loop"))
    );
}

#[test]
fn map_attribute_shapes_are_checked() {
    // __uint whose pointee is not an array.
    let blob = one_map(|b, int| vec![("type", b.ptr(int))]);
    assert!(matches!(
        Btf::parse(&blob).unwrap().map_defs(),
        Err(Error::MapDefinition { .. })
    ));
    // Unknown attribute.
    let blob = one_map(|b, int| vec![("numa_node", b.uint(int, 1))]);
    assert!(
        matches!(Btf::parse(&blob).unwrap().map_defs(), Err(Error::MapDefinition { reason, .. }) if reason.contains("numa_node"))
    );
    // key and key_size disagreeing.
    let blob = one_map(|b, int| vec![("key_size", b.uint(int, 8)), ("key", b.ptr(int))]);
    assert!(matches!(
        Btf::parse(&blob).unwrap().map_defs(),
        Err(Error::MapDefinition { .. })
    ));
    // Key of type void.
    let blob = one_map(|b, _| vec![("key", b.ptr(0))]);
    assert!(Btf::parse(&blob).unwrap().map_defs().is_err());
}

#[test]
fn datasec_fixup_fills_sizes_and_offsets() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4);
    let v1 = b.var("a", int);
    let v2 = b.var("b", int);
    b.datasec(".data", &[v1, v2]);
    let btf = Btf::parse(&b.build()).unwrap();
    let fixed = btf
        .for_kernel(
            |s| (s == ".data").then_some(16),
            |_, v| Some(if v == "a" { 0 } else { 12 }),
        )
        .unwrap();
    let layout = Btf::parse(&fixed)
        .unwrap()
        .datasec_layout(".data")
        .unwrap()
        .unwrap();
    assert_eq!(
        layout,
        (16, vec![("a".to_string(), 0), ("b".to_string(), 12)])
    );
    assert!(btf.for_kernel(|_| None, |_, _| Some(0)).is_err());
}
