//! Raw system calls: `bpf(2)`, `perf_event_open(2)`, `ioctl(2)`, `setrlimit(2)`.
//!
//! All of the loader's `unsafe` code is in this module. Each `bpf(2)` command has its own
//! `#[repr(C)]` attribute struct laid out like the kernel's `union bpf_attr` member, with a
//! compile-time size check, and a unit test compares every field's offset and size with the
//! installed `<linux/bpf.h>` as clang reads it (build.rs writes them to `kernel_layout.rs`). The safe wrappers check every buffer length they hand to the kernel
//! against the sizes the kernel will use, so no caller can make the kernel read or write past a
//! buffer.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::reloc::Insn;
use crate::uapi::{AttachType, MapType, ProgType};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_MAP_GET_NEXT_KEY: u32 = 4;
const BPF_PROG_LOAD: u32 = 5;
const BPF_OBJ_PIN: u32 = 6;
const BPF_OBJ_GET: u32 = 7;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_PROG_QUERY: u32 = 16;
const BPF_BTF_LOAD: u32 = 18;
const BPF_MAP_FREEZE: u32 = 22;
const BPF_MAP_LOOKUP_BATCH: u32 = 24;
const BPF_LINK_CREATE: u32 = 28;

/// The kernel's ENOTSUPP (not in libc): an operation this kernel or map type does not support.
pub(crate) const ENOTSUPP: i32 = 524;

/// `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

/// `BPF_MAP_LOOKUP_ELEM`, `BPF_MAP_UPDATE_ELEM`, `BPF_MAP_DELETE_ELEM`, `BPF_MAP_GET_NEXT_KEY`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

/// `BPF_MAP_LOOKUP_BATCH`.
#[repr(C)]
#[derive(Default)]
struct MapBatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `BPF_MAP_FREEZE`.
#[repr(C)]
#[derive(Default)]
struct MapFreezeAttr {
    map_fd: u32,
}

/// `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `BPF_OBJ_PIN`, `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `BPF_PROG_QUERY`, up to `prog_cnt`.
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
}

/// `BPF_LINK_CREATE`, up to `flags`.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// The first fields of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
}

/// The first fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default, Clone, Debug)]
pub(crate) struct MapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; 16],
}

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER0`.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const _: () = assert!(size_of::<MapCreateAttr>() == 72);
const _: () = assert!(size_of::<MapElemAttr>() == 32);
const _: () = assert!(size_of::<MapBatchAttr>() == 56);
const _: () = assert!(size_of::<MapFreezeAttr>() == 4);
const _: () = assert!(size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(size_of::<ObjAttr>() == 16);
const _: () = assert!(size_of::<InfoAttr>() == 16);
const _: () = assert!(size_of::<ProgQueryAttr>() == 32);
const _: () = assert!(size_of::<BtfLoadAttr>() == 32);
const _: () = assert!(size_of::<LinkCreateAttr>() == 16);
const _: () = assert!(size_of::<ProgInfo>() == 8);
const _: () = assert!(size_of::<MapInfo>() == 40);
const _: () = assert!(size_of::<PerfEventAttr>() == 64);

/// The one entry point to `bpf(2)`. Private: only the wrappers below, which build `attr` with
/// valid pointers and lengths, may call it. Retries EINTR/EAGAIN a few times.
fn bpf<T>(cmd: u32, attr: &mut T) -> io::Result<i64> {
    let mut tries = 0;
    loop {
        // SAFETY: `attr` is one of this module's #[repr(C)] structs laid out like the kernel's
        // attribute for `cmd`, the size passed is its exact size, and every pointer inside it was
        // set by the calling wrapper to a live buffer at least as long as the kernel will use.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd as libc::c_long,
                attr as *mut T,
                size_of::<T>() as libc::c_uint,
            )
        };
        if ret >= 0 {
            return Ok(ret);
        }
        let err = io::Error::last_os_error();
        tries += 1;
        if tries < 5 && matches!(err.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
            continue;
        }
        return Err(err);
    }
}

/// Takes ownership of a file descriptor the kernel just returned.
fn owned_fd(ret: i64) -> OwnedFd {
    // SAFETY: `ret` is a new file descriptor returned by a successful syscall; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

fn einval(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Encodes an object name for the kernel: at most 15 bytes of `[A-Za-z0-9_.]`, NUL-terminated.
pub(crate) fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (slot, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *slot = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            b
        } else {
            b'_'
        };
    }
    out
}

/// Bytes of one map value as userspace reads and writes it: `value_size`, or for per-CPU maps
/// `value_size` rounded up to 8, times the number of possible CPUs.
fn value_len(map_type: MapType, value_size: u32) -> io::Result<usize> {
    if map_type.is_per_cpu() {
        let cpus = crate::possible_cpus().map_err(|e| io::Error::other(e.to_string()))?;
        Ok((value_size as usize).div_ceil(8) * 8 * cpus)
    } else {
        Ok(value_size as usize)
    }
}

/// What to create with BPF_MAP_CREATE.
pub(crate) struct MapCreate<'a> {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub name: &'a str,
    /// BTF object fd and key/value type ids, for maps that need them.
    pub btf: Option<(BorrowedFd<'a>, u32, u32)>,
}

/// A map file descriptor together with the sizes the kernel uses for its keys and values.
#[derive(Debug)]
pub(crate) struct MapFd {
    fd: OwnedFd,
    key_size: usize,
    value_len: usize,
}

impl MapFd {
    /// BPF_MAP_CREATE.
    pub fn create(c: &MapCreate<'_>) -> io::Result<MapFd> {
        let value_len = value_len(c.map_type, c.value_size)?;
        let mut attr = MapCreateAttr {
            map_type: c.map_type.value(),
            key_size: c.key_size,
            value_size: c.value_size,
            max_entries: c.max_entries,
            map_flags: c.flags,
            map_name: object_name(c.name),
            ..Default::default()
        };
        if let Some((btf, key, value)) = c.btf {
            attr.btf_fd = fd_u32(btf);
            attr.btf_key_type_id = key;
            attr.btf_value_type_id = value;
        }
        let fd = owned_fd(bpf(BPF_MAP_CREATE, &mut attr)?);
        Ok(MapFd {
            fd,
            key_size: c.key_size as usize,
            value_len,
        })
    }

    /// BPF_OBJ_GET of a pinned map, with its sizes from BPF_OBJ_GET_INFO_BY_FD.
    pub fn from_pin(path: &CStr) -> io::Result<(MapFd, MapInfo)> {
        let fd = obj_get(path)?;
        let mut info = MapInfo::default();
        obj_info(fd.as_fd(), &mut info)?;
        let value_len = value_len(MapType::from(info.map_type), info.value_size)?;
        Ok((
            MapFd {
                fd,
                key_size: info.key_size as usize,
                value_len,
            },
            info,
        ))
    }

    /// Bytes of one value as lookup/update use it.
    pub fn value_len(&self) -> usize {
        self.value_len
    }

    fn check(&self, key: Option<&[u8]>, value: Option<usize>) -> io::Result<()> {
        if key.is_some_and(|k| k.len() != self.key_size) {
            return Err(einval("key length differs from the map's key size"));
        }
        if value.is_some_and(|v| v != self.value_len) {
            return Err(einval("value length differs from the map's value length"));
        }
        Ok(())
    }

    fn elem_attr(&self, key: Option<&[u8]>) -> MapElemAttr {
        MapElemAttr {
            map_fd: fd_u32(self.fd.as_fd()),
            key: key.map_or(0, |k| k.as_ptr() as u64),
            ..Default::default()
        }
    }

    /// BPF_MAP_LOOKUP_ELEM; `Ok(false)` when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        self.check(Some(key), Some(value.len()))?;
        let mut attr = self.elem_attr(Some(key));
        attr.value_or_next_key = value.as_mut_ptr() as u64;
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// BPF_MAP_UPDATE_ELEM.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
        self.check(Some(key), Some(value.len()))?;
        let mut attr = self.elem_attr(Some(key));
        attr.value_or_next_key = value.as_ptr() as u64;
        attr.flags = flags;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    /// BPF_MAP_DELETE_ELEM; `Ok(false)` when the key was absent.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.check(Some(key), None)?;
        let mut attr = self.elem_attr(Some(key));
        match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// BPF_MAP_GET_NEXT_KEY (the first key when `key` is `None`); `Ok(false)` at the end.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
        self.check(key, None)?;
        if next.len() != self.key_size {
            return Err(einval("key length differs from the map's key size"));
        }
        let mut attr = self.elem_attr(key);
        attr.value_or_next_key = next.as_mut_ptr() as u64;
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One BPF_MAP_LOOKUP_BATCH call: fills up to `keys.len() / key_size` entries. `in_batch` is
    /// the previous call's `out_batch` (None for the first call); `out_batch` must be at least
    /// 8 bytes and at least the key size. Returns the number of entries read and whether the
    /// map is exhausted (ENOENT).
    pub fn lookup_batch(
        &self,
        in_batch: Option<&[u8]>,
        out_batch: &mut [u8],
        keys: &mut [u8],
        values: &mut [u8],
    ) -> io::Result<(usize, bool)> {
        if self.key_size == 0 || !keys.len().is_multiple_of(self.key_size) || keys.is_empty() {
            return Err(einval("key buffer is not a whole number of keys"));
        }
        let count = keys.len() / self.key_size;
        let token_len = self.key_size.max(8);
        if values.len() != count * self.value_len
            || out_batch.len() < token_len
            || in_batch.is_some_and(|b| b.len() < token_len)
        {
            return Err(einval(
                "batch buffers do not match the map's key and value sizes",
            ));
        }
        let mut attr = MapBatchAttr {
            in_batch: in_batch.map_or(0, |b| b.as_ptr() as u64),
            out_batch: out_batch.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(count).map_err(|_| einval("batch too large"))?,
            map_fd: fd_u32(self.fd.as_fd()),
            ..Default::default()
        };
        match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(_) => Ok((attr.count as usize, false)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((attr.count as usize, true)),
            Err(e) => Err(e),
        }
    }

    /// BPF_MAP_FREEZE: no more writes from userspace.
    pub fn freeze(&self) -> io::Result<()> {
        let mut attr = MapFreezeAttr {
            map_fd: fd_u32(self.fd.as_fd()),
        };
        bpf(BPF_MAP_FREEZE, &mut attr).map(|_| ())
    }

    /// BPF_OBJ_GET_INFO_BY_FD.
    pub fn info(&self) -> io::Result<MapInfo> {
        let mut info = MapInfo::default();
        obj_info(self.fd.as_fd(), &mut info)?;
        Ok(info)
    }
}

impl AsFd for MapFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Types BPF_OBJ_GET_INFO_BY_FD may fill: prefixes of the kernel's info structs.
trait InfoStruct {}
impl InfoStruct for ProgInfo {}
impl InfoStruct for MapInfo {}

fn obj_info<T: InfoStruct>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(fd),
        info_len: size_of::<T>() as u32,
        info: info as *mut T as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(|_| ())
}

/// The kernel-assigned id of a program.
pub(crate) fn prog_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = ProgInfo::default();
    obj_info(fd, &mut info)?;
    Ok(info.id)
}

/// What BPF_PROG_LOAD gets.
pub(crate) struct ProgLoad<'a> {
    pub prog_type: ProgType,
    /// `None`: 0, which the kernel does not check for the program types that take none.
    pub expected_attach_type: Option<AttachType>,
    pub insns: &'a [Insn],
    pub license: &'a CStr,
    pub name: &'a str,
}

/// BPF_PROG_LOAD, with a verifier log of `log.len()` bytes at `log_level` when `log` is given.
pub(crate) fn prog_load(p: &ProgLoad<'_>, log: Option<(&mut [u8], u32)>) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: p.prog_type as u32,
        insn_cnt: u32::try_from(p.insns.len()).map_err(|_| einval("too many instructions"))?,
        insns: p.insns.as_ptr() as u64,
        license: p.license.as_ptr() as u64,
        prog_name: object_name(p.name),
        expected_attach_type: p.expected_attach_type.map_or(0, |t| t as u32),
        ..Default::default()
    };
    if let Some((buf, level)) = log {
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        attr.log_level = level;
        attr.log_size = u32::try_from(buf.len()).map_err(|_| einval("log buffer too large"))?;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    bpf(BPF_PROG_LOAD, &mut attr).map(owned_fd)
}

/// BPF_BTF_LOAD, with a log when `log` is non-empty.
pub(crate) fn btf_load(blob: &[u8], log: &mut [u8]) -> io::Result<OwnedFd> {
    let mut attr = BtfLoadAttr {
        btf: blob.as_ptr() as u64,
        btf_size: u32::try_from(blob.len()).map_err(|_| einval("BTF too large"))?,
        ..Default::default()
    };
    if !log.is_empty() {
        log[0] = 0;
        attr.btf_log_buf = log.as_mut_ptr() as u64;
        attr.btf_log_size = u32::try_from(log.len()).map_err(|_| einval("log buffer too large"))?;
        attr.btf_log_level = 1;
    }
    bpf(BPF_BTF_LOAD, &mut attr).map(owned_fd)
}

/// BPF_OBJ_PIN.
pub(crate) fn obj_pin(fd: BorrowedFd<'_>, path: &CStr) -> io::Result<()> {
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd_u32(fd),
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// BPF_OBJ_GET.
pub(crate) fn obj_get(path: &CStr) -> io::Result<OwnedFd> {
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_OBJ_GET, &mut attr).map(owned_fd)
}

/// BPF_LINK_CREATE.
pub(crate) fn link_create(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: AttachType,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target_fd: fd_u32(target),
        attach_type: attach_type as u32,
        flags: 0,
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(owned_fd)
}

/// BPF_PROG_QUERY: ids of the programs attached directly to `target` for `attach_type`.
pub(crate) fn prog_query(target: BorrowedFd<'_>, attach_type: AttachType) -> io::Result<Vec<u32>> {
    let mut ids: Vec<u32> = Vec::new();
    loop {
        let mut attr = ProgQueryAttr {
            target_fd: fd_u32(target),
            attach_type: attach_type as u32,
            prog_ids: if ids.is_empty() {
                0
            } else {
                ids.as_mut_ptr() as u64
            },
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) if (attr.prog_cnt as usize) <= ids.len() => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // First call (or more programs appeared): size the buffer and ask again.
            Ok(_) => ids = vec![0; attr.prog_cnt as usize],
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => ids = vec![0; ids.len() * 2 + 8],
            Err(e) => return Err(e),
        }
    }
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// perf_event_open(2) of tracepoint `id` on CPU 0 for all processes (a BPF program attached to it
/// runs on every CPU).
pub(crate) fn perf_event_open_tracepoint(id: u64) -> io::Result<OwnedFd> {
    let mut attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares (PERF_ATTR_SIZE_VER0);
    // pid -1 / cpu 0 / group -1 are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &mut attr as *mut PerfEventAttr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned_fd(ret))
}

/// perf_event_open(2) of a kprobe (or, with `retprobe_bit`, a kretprobe) on kernel function
/// `function`, through the kprobe PMU of type `pmu_type` (sysfs
/// `/sys/bus/event_source/devices/kprobe/type`), on CPU 0 for all processes. The probe lives as
/// long as the perf event: it never appears in tracefs `kprobe_events`.
pub(crate) fn perf_event_open_kprobe(
    pmu_type: u32,
    retprobe_bit: Option<u32>,
    function: &CStr,
) -> io::Result<OwnedFd> {
    let mut attr = PerfEventAttr {
        type_: pmu_type,
        size: size_of::<PerfEventAttr>() as u32,
        // The PMU's `format/retprobe` names the config bit that asks for a return probe.
        config: retprobe_bit.map_or(0, |bit| 1u64 << (bit & 63)),
        sample_period: 1,
        wakeup_events: 1,
        // `kprobe_func`: a pointer to the NUL-terminated name. `probe_offset` (config2) lies past
        // PERF_ATTR_SIZE_VER0, so the kernel reads it as 0: the probe sits at the entry.
        config1: function.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares (PERF_ATTR_SIZE_VER0);
    // its `kprobe_func` points into `function`, a NUL-terminated string that outlives the call
    // (the kernel copies it); pid -1 / cpu 0 / group -1 are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &mut attr as *mut PerfEventAttr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned_fd(ret))
}

/// PERF_EVENT_IOC_SET_BPF then PERF_EVENT_IOC_ENABLE: the pre-5.15 way to attach a program.
pub(crate) fn perf_event_attach_bpf(perf: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: SET_BPF takes the program fd as an integer argument; `perf` is a live perf event fd.
    if unsafe {
        libc::ioctl(
            perf.as_raw_fd(),
            PERF_EVENT_IOC_SET_BPF as _,
            prog.as_raw_fd(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ENABLE takes an integer argument (0); `perf` is a live perf event fd.
    if unsafe { libc::ioctl(perf.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises RLIMIT_MEMLOCK to infinity (BPF memory was charged to it before Linux 5.11).
pub(crate) fn raise_memlock_limit() -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid rlimit that setrlimit only reads.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `op`; on EPERM, which kernels before 5.11 also answer when RLIMIT_MEMLOCK is used up
/// (they charge BPF maps and programs to it; 5.11 and later charge the memory cgroup), raises
/// the limit and runs it once more. Asking the kernel this way needs no version check.
pub(crate) fn memlock_retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => match raise_memlock_limit() {
            Ok(()) => op(),
            Err(_) => Err(e),
        },
        other => other,
    }
}

/// Is the effective user root?
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
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
}
