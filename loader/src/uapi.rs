//! Typed constants of the kernel's BPF uapi (`<linux/bpf.h>`): map types, program types and
//! attach types. Each variant is named after the kernel's `BPF_MAP_TYPE_*`, `BPF_PROG_TYPE_*` or
//! `BPF_*` attach type name and carries its value; a unit test checks every value against the
//! installed header (through the constants `build.rs` generates from it).

use crate::error::{Error, Result};

/// Defines a `#[repr(u32)]` enum of kernel constants with its value and C name tables.
macro_rules! kernel_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($c_enum:literal) {
            $($variant:ident = $value:literal => $c_name:literal,)*
        }
        $(other: $(#[$other_meta:meta])* $other:ident)?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        #[repr(u32)]
        pub enum $name {
            $(
                #[doc = concat!("`", $c_name, "` (", stringify!($value), ").")]
                $variant = $value,
            )*
            $($(#[$other_meta])* $other(u32) = u32::MAX,)?
        }

        impl $name {
            /// The kernel's value.
            pub const fn value(self) -> u32 {
                match self {
                    $($name::$variant => $value,)*
                    $($name::$other(value) => value,)?
                }
            }

            /// The kernel's name of the constant (`None` for a value without a name here).
            pub const fn kernel_name(self) -> Option<&'static str> {
                match self {
                    $($name::$variant => Some($c_name),)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// Every named variant, in value order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The variant for a value this enum has a name for.
            const fn named(value: u32) -> Option<$name> {
                match value {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The C enum the constants belong to.
            #[allow(dead_code)]
            pub(crate) const C_ENUM: &'static str = $c_enum;
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.value() == other.value()
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.value().hash(state)
            }
        }

        impl From<$name> for u32 {
            fn from(t: $name) -> u32 {
                t.value()
            }
        }
    };
}

kernel_enum! {
    /// `enum bpf_map_type`. Map types read from an object's BTF or from the kernel that have no
    /// name here are kept as [`MapType::Other`] and handed to the kernel unchanged, which decides.
    pub enum MapType ("bpf_map_type") {
        Unspec = 0 => "BPF_MAP_TYPE_UNSPEC",
        Hash = 1 => "BPF_MAP_TYPE_HASH",
        Array = 2 => "BPF_MAP_TYPE_ARRAY",
        ProgArray = 3 => "BPF_MAP_TYPE_PROG_ARRAY",
        PerfEventArray = 4 => "BPF_MAP_TYPE_PERF_EVENT_ARRAY",
        PercpuHash = 5 => "BPF_MAP_TYPE_PERCPU_HASH",
        PercpuArray = 6 => "BPF_MAP_TYPE_PERCPU_ARRAY",
        StackTrace = 7 => "BPF_MAP_TYPE_STACK_TRACE",
        CgroupArray = 8 => "BPF_MAP_TYPE_CGROUP_ARRAY",
        LruHash = 9 => "BPF_MAP_TYPE_LRU_HASH",
        LruPercpuHash = 10 => "BPF_MAP_TYPE_LRU_PERCPU_HASH",
        LpmTrie = 11 => "BPF_MAP_TYPE_LPM_TRIE",
        ArrayOfMaps = 12 => "BPF_MAP_TYPE_ARRAY_OF_MAPS",
        HashOfMaps = 13 => "BPF_MAP_TYPE_HASH_OF_MAPS",
        Devmap = 14 => "BPF_MAP_TYPE_DEVMAP",
        Sockmap = 15 => "BPF_MAP_TYPE_SOCKMAP",
        Cpumap = 16 => "BPF_MAP_TYPE_CPUMAP",
        Xskmap = 17 => "BPF_MAP_TYPE_XSKMAP",
        Sockhash = 18 => "BPF_MAP_TYPE_SOCKHASH",
        CgroupStorage = 19 => "BPF_MAP_TYPE_CGROUP_STORAGE",
        ReuseportSockarray = 20 => "BPF_MAP_TYPE_REUSEPORT_SOCKARRAY",
        PercpuCgroupStorage = 21 => "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE",
        Queue = 22 => "BPF_MAP_TYPE_QUEUE",
        Stack = 23 => "BPF_MAP_TYPE_STACK",
        SkStorage = 24 => "BPF_MAP_TYPE_SK_STORAGE",
        DevmapHash = 25 => "BPF_MAP_TYPE_DEVMAP_HASH",
        StructOps = 26 => "BPF_MAP_TYPE_STRUCT_OPS",
        Ringbuf = 27 => "BPF_MAP_TYPE_RINGBUF",
        InodeStorage = 28 => "BPF_MAP_TYPE_INODE_STORAGE",
        TaskStorage = 29 => "BPF_MAP_TYPE_TASK_STORAGE",
        BloomFilter = 30 => "BPF_MAP_TYPE_BLOOM_FILTER",
        UserRingbuf = 31 => "BPF_MAP_TYPE_USER_RINGBUF",
        CgrpStorage = 32 => "BPF_MAP_TYPE_CGRP_STORAGE",
        Arena = 33 => "BPF_MAP_TYPE_ARENA",
    }
    other:
    /// A value with no name above (a map type newer than this list). [`MapType::from`] makes
    /// it only for such values, and equality compares values, so `Other(5) == PercpuHash`.
    Other
}

impl From<u32> for MapType {
    fn from(value: u32) -> MapType {
        MapType::named(value).unwrap_or(MapType::Other(value))
    }
}

impl MapType {
    /// Map types whose `max_entries` must be 0 (storage attached to sockets, cgroups, tasks,
    /// inodes).
    pub fn is_storage(self) -> bool {
        matches!(
            MapType::from(self.value()),
            MapType::CgroupStorage
                | MapType::PercpuCgroupStorage
                | MapType::SkStorage
                | MapType::InodeStorage
                | MapType::TaskStorage
                | MapType::CgrpStorage
        )
    }

    /// Map types the kernel refuses to create without BTF key and value types.
    pub fn needs_btf(self) -> bool {
        matches!(
            MapType::from(self.value()),
            MapType::SkStorage
                | MapType::InodeStorage
                | MapType::TaskStorage
                | MapType::CgrpStorage
        )
    }

    /// Map types whose values are per CPU.
    pub fn is_per_cpu(self) -> bool {
        matches!(
            MapType::from(self.value()),
            MapType::PercpuHash
                | MapType::PercpuArray
                | MapType::LruPercpuHash
                | MapType::PercpuCgroupStorage
        )
    }
}

kernel_enum! {
    /// `enum bpf_prog_type`.
    pub enum ProgType ("bpf_prog_type") {
        Unspec = 0 => "BPF_PROG_TYPE_UNSPEC",
        SocketFilter = 1 => "BPF_PROG_TYPE_SOCKET_FILTER",
        Kprobe = 2 => "BPF_PROG_TYPE_KPROBE",
        SchedCls = 3 => "BPF_PROG_TYPE_SCHED_CLS",
        SchedAct = 4 => "BPF_PROG_TYPE_SCHED_ACT",
        Tracepoint = 5 => "BPF_PROG_TYPE_TRACEPOINT",
        Xdp = 6 => "BPF_PROG_TYPE_XDP",
        PerfEvent = 7 => "BPF_PROG_TYPE_PERF_EVENT",
        CgroupSkb = 8 => "BPF_PROG_TYPE_CGROUP_SKB",
        CgroupSock = 9 => "BPF_PROG_TYPE_CGROUP_SOCK",
        LwtIn = 10 => "BPF_PROG_TYPE_LWT_IN",
        LwtOut = 11 => "BPF_PROG_TYPE_LWT_OUT",
        LwtXmit = 12 => "BPF_PROG_TYPE_LWT_XMIT",
        SockOps = 13 => "BPF_PROG_TYPE_SOCK_OPS",
        SkSkb = 14 => "BPF_PROG_TYPE_SK_SKB",
        CgroupDevice = 15 => "BPF_PROG_TYPE_CGROUP_DEVICE",
        SkMsg = 16 => "BPF_PROG_TYPE_SK_MSG",
        RawTracepoint = 17 => "BPF_PROG_TYPE_RAW_TRACEPOINT",
        CgroupSockAddr = 18 => "BPF_PROG_TYPE_CGROUP_SOCK_ADDR",
        LwtSeg6local = 19 => "BPF_PROG_TYPE_LWT_SEG6LOCAL",
        LircMode2 = 20 => "BPF_PROG_TYPE_LIRC_MODE2",
        SkReuseport = 21 => "BPF_PROG_TYPE_SK_REUSEPORT",
        FlowDissector = 22 => "BPF_PROG_TYPE_FLOW_DISSECTOR",
        CgroupSysctl = 23 => "BPF_PROG_TYPE_CGROUP_SYSCTL",
        RawTracepointWritable = 24 => "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE",
        CgroupSockopt = 25 => "BPF_PROG_TYPE_CGROUP_SOCKOPT",
        Tracing = 26 => "BPF_PROG_TYPE_TRACING",
        StructOps = 27 => "BPF_PROG_TYPE_STRUCT_OPS",
        Ext = 28 => "BPF_PROG_TYPE_EXT",
        Lsm = 29 => "BPF_PROG_TYPE_LSM",
        SkLookup = 30 => "BPF_PROG_TYPE_SK_LOOKUP",
        Syscall = 31 => "BPF_PROG_TYPE_SYSCALL",
        Netfilter = 32 => "BPF_PROG_TYPE_NETFILTER",
    }
}

impl TryFrom<u32> for ProgType {
    type Error = Error;

    /// The program type of a kernel value; an error for a value with no name here.
    fn try_from(value: u32) -> Result<ProgType> {
        ProgType::named(value)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown BPF program type {value}")))
    }
}

kernel_enum! {
    /// Attach types the loader uses (`enum bpf_attach_type`).
    pub enum AttachType ("bpf_attach_type") {
        CgroupInetIngress = 0 => "BPF_CGROUP_INET_INGRESS",
        CgroupInetEgress = 1 => "BPF_CGROUP_INET_EGRESS",
        CgroupInetSockCreate = 2 => "BPF_CGROUP_INET_SOCK_CREATE",
        CgroupSockOps = 3 => "BPF_CGROUP_SOCK_OPS",
        TraceFentry = 24 => "BPF_TRACE_FENTRY",
        TraceFexit = 25 => "BPF_TRACE_FEXIT",
        CgroupInetSockRelease = 34 => "BPF_CGROUP_INET_SOCK_RELEASE",
        PerfEvent = 41 => "BPF_PERF_EVENT",
    }
}

impl TryFrom<u32> for AttachType {
    type Error = Error;

    /// The attach type of a kernel value; an error for one the loader does not use.
    fn try_from(value: u32) -> Result<AttachType> {
        AttachType::named(value)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown BPF attach type {value}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for &t in MapType::ALL {
            assert_eq!(MapType::from(t.value()), t);
            assert!(!matches!(MapType::from(t.value()), MapType::Other(_)));
        }
        assert!(matches!(MapType::from(1000), MapType::Other(1000)));
        assert_eq!(MapType::from(1000).value(), 1000);
        assert_eq!(MapType::Other(5), MapType::PercpuHash);
        assert!(MapType::Other(5).is_per_cpu());
        for &t in ProgType::ALL {
            assert_eq!(ProgType::try_from(t.value()).unwrap(), t);
        }
        assert!(matches!(
            ProgType::try_from(1000),
            Err(Error::InvalidArgument(_))
        ));
        for &t in AttachType::ALL {
            assert_eq!(AttachType::try_from(t.value()).unwrap(), t);
            assert_eq!(t as u32, t.value());
        }
        assert_eq!(ProgType::Tracepoint as u32, 5);
        assert!(AttachType::try_from(5).is_err());
    }

    /// Every value against the installed `<linux/bpf.h>` (`$OUT_DIR/kernel_layout.rs`, written
    /// by build.rs with clang); constants newer than the header are skipped. Every map and
    /// program type of the header has a name here.
    #[test]
    fn values_match_the_installed_uapi_header() {
        use crate::kernel_layout::{enum_constant, ENUM_CONSTANTS};
        let named = MapType::ALL
            .iter()
            .map(|t| (t.kernel_name(), t.value()))
            .chain(ProgType::ALL.iter().map(|t| (t.kernel_name(), t.value())))
            .chain(AttachType::ALL.iter().map(|t| (t.kernel_name(), t.value())));
        let mut checked = 0;
        for (name, value) in named {
            let name = name.unwrap();
            if let Some(kernel) = enum_constant(name) {
                assert_eq!(u64::from(value), kernel, "{name}");
                checked += 1;
            }
        }
        assert!(checked >= 60, "only {checked} constants checked");
        for (c_enum, name, value) in ENUM_CONSTANTS {
            let value = u32::try_from(*value).unwrap();
            if name.starts_with("__") {
                continue;
            }
            if *c_enum == MapType::C_ENUM {
                assert!(
                    MapType::named(value).is_some(),
                    "{name} ({value}) has no MapType"
                );
            }
            if *c_enum == ProgType::C_ENUM {
                assert!(
                    ProgType::named(value).is_some(),
                    "{name} ({value}) has no ProgType"
                );
            }
        }
    }

    #[test]
    fn map_type_classes_keep_their_values() {
        let values = |f: fn(MapType) -> bool| -> Vec<u32> {
            MapType::ALL
                .iter()
                .filter(|t| f(**t))
                .map(|t| t.value())
                .collect()
        };
        assert_eq!(values(MapType::is_storage), [19, 21, 24, 28, 29, 32]);
        assert_eq!(values(MapType::needs_btf), [24, 28, 29, 32]);
        assert_eq!(values(MapType::is_per_cpu), [5, 6, 10, 21]);
    }
}
