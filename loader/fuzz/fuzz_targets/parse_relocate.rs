//! Arbitrary bytes through the whole pure pipeline: ELF + BTF parsing, then relocation of every
//! program, then `set_global` on every global. Any panic is a bug: bad input must be an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_loader::ObjectSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(mut spec) = ObjectSpec::parse(data) else {
        return;
    };
    let fds: Vec<i32> = (0..spec.maps().len() as i32).map(|i| 100 + i).collect();
    let names: Vec<String> = spec.programs().iter().map(|p| p.name.clone()).collect();
    for name in &names {
        let _ = spec.relocated_instructions(name, &fds);
    }
    let globals: Vec<(String, usize)> = spec
        .globals()
        .iter()
        .map(|g| (g.name.clone(), g.size))
        .collect();
    for (name, size) in globals {
        let _ = spec.set_global(&name, &vec![0xa5; size.min(1 << 16)]);
    }
});
