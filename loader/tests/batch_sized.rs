//! `Map::lookup_batch_sized` on the real kernel: buffers sized for fewer entries than the map
//! holds still read every entry, in as many batches as it takes.

use std::collections::BTreeMap;

use podnet_loader::{Map, ObjectSpec, BPF_NOEXIST};
use podnet_testing::sandbox::require_privileges;

const FEATURES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/features.bpf.o"));

#[test]
fn sized_batch_reads_return_every_entry_whatever_the_hint() {
    if !require_privileges("sized_batch_reads_return_every_entry_whatever_the_hint") {
        return;
    }
    let spec = ObjectSpec::parse(FEATURES).unwrap();
    let hash = Map::create(spec.map("big_hash").unwrap()).unwrap();
    let n = 1_000u64;
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = (0..n)
        .map(|i| {
            (
                (i * 13 + 5).to_ne_bytes().to_vec(),
                (i * 2).to_ne_bytes().to_vec(),
            )
        })
        .collect();
    for (k, v) in &expected {
        hash.update(k, v, BPF_NOEXIST).unwrap();
    }
    for hint in [0, 1, 7, 999, 1000, 5000, 10_000] {
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            hash.lookup_batch_sized(hint).unwrap().into_iter().collect();
        assert_eq!(got.len(), n as usize, "hint {hint}");
        assert_eq!(got, expected, "hint {hint}");
    }
}
