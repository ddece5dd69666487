//! podnet's own eBPF loader.
//!
//! It reads a BPF object compiled with `clang -target bpf -O2 -g -c` ([`ObjectSpec::parse`]),
//! lets the caller size maps and set `.rodata` constants, then creates maps and loads programs
//! with raw `bpf(2)` calls ([`Object::load`]), and attaches them to cgroup v2 directories or
//! tracepoints and kprobes with links that detach when dropped or when the process dies.
//!
//! ```no_run
//! # fn main() -> podnet_loader::Result<()> {
//! use podnet_loader::{Object, ObjectSpec, BPF_NOEXIST};
//! let bytes = std::fs::read("podnet.bpf.o").unwrap();
//! let mut spec = ObjectSpec::parse(&bytes)?;
//! spec.map_mut("counters")?.max_entries = 4096;
//! let obj = Object::load(&spec)?;
//! let counters = obj.map("counters")?;
//! counters.update(&42u64.to_ne_bytes(), &vec![0; counters.value_len()], BPF_NOEXIST)?;
//! let link = obj.program("podnet_egress")?.attach_cgroup("/sys/fs/cgroup/unified/some.slice")?;
//! for (key, value) in counters.lookup_batch()? {
//!     let sums = counters.sum_percpu_u64(&value)?;
//!     println!("{key:?}: {sums:?}");
//! }
//! drop(link); // detached
//! # Ok(()) }
//! ```
//!
//! Kernel requirements: cgroup links 5.7, `cgroup/sock_release` 5.9, batch map reads 5.6 (older
//! kernels fall back to key iteration), perf-event links 5.15 (older kernels fall back to
//! `PERF_EVENT_IOC_SET_BPF`). All `unsafe` code is in the private `sys` module.

#![deny(missing_docs)]

mod btf;
mod elf;
mod error;
mod kernel_btf;
mod kernel_files;
mod kprobe;
mod map;
pub mod mountinfo;
mod object;
pub mod probe;
mod program;
mod reloc;
mod sys;
mod uapi;

pub use elf::{GlobalVar, MapKind, MapSpec, ObjectSpec, ProgramKind, ProgramSpec};
pub use error::{Error, Result};
pub use kernel_btf::{kernel_btf_function_id, VMLINUX_BTF};
pub use kernel_files::{
    bpffs_dir, parse_cpu_list, possible_cpus, tracefs_dir, tracepoint_exists, tracepoint_id,
};
pub use kprobe::kernel_function_exists;
pub use map::{Keys, Map, BPF_ANY, BPF_EXIST, BPF_NOEXIST};
pub use object::Object;
pub use program::{query_cgroup_programs, Link, LinkKind, Program};
pub use reloc::Insn;
pub use uapi::{AttachType, MapType, ProgType};

/// The kernel's struct layouts and constants as the installed uapi headers define them, written
/// by build.rs with clang: the oracle the unit tests check the loader's own copies against.
#[cfg(test)]
mod kernel_layout {
    include!(concat!(env!("OUT_DIR"), "/kernel_layout.rs"));

    /// `(offset, size)` of a field of `loader/build.rs`'s FIELDS; `None` when the installed
    /// header lacks it.
    pub(crate) fn field(key: &str) -> Option<(usize, usize)> {
        FIELDS
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{key} is not in FIELDS of loader/build.rs: add it"))
            .1
    }

    /// A constant of `loader/build.rs`'s CONSTANTS; `None` when the installed headers lack it.
    pub(crate) fn constant(key: &str) -> Option<u64> {
        CONSTANTS
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{key} is not in CONSTANTS of loader/build.rs: add it"))
            .1
    }

    /// A constant of one of the header's enums; `None` when the installed header lacks it.
    pub(crate) fn enum_constant(name: &str) -> Option<u64> {
        ENUM_CONSTANTS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(_, _, v)| *v)
    }
}
