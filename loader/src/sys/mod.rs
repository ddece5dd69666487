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
const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
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

/// `BPF_PROG_LOAD`, up to `core_relo_cnt` (Linux 5.17; zero, which older kernels accept as the
/// unused tail of the attribute).
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
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    /// Named so that the struct has no padding: every byte the kernel reads is initialised.
    core_relo_cnt: u32,
}

/// `BPF_RAW_TRACEPOINT_OPEN` (Linux 4.17; attaches tracing programs from 5.5).
#[repr(C)]
#[derive(Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
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
const _: () = assert!(size_of::<ProgLoadAttr>() == 120);
const _: () = assert!(size_of::<RawTracepointAttr>() == 16);
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
    /// For tracing programs: the kernel function's id in the kernel's BTF (0: none).
    pub attach_btf_id: u32,
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
        attach_btf_id: p.attach_btf_id,
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

/// BPF_RAW_TRACEPOINT_OPEN without a name: attaches a tracing (fentry/fexit) program to the
/// kernel function it was loaded for, returning the link.
pub(crate) fn raw_tracepoint_open(prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = RawTracepointAttr {
        name: 0,
        prog_fd: fd_u32(prog),
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).map(owned_fd)
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
    perf_event_open(&mut attr)
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
    // `kprobe_func` points into `function`, a NUL-terminated string borrowed for this whole
    // function, so it outlives the call (the kernel copies it).
    perf_event_open(&mut attr)
}

/// perf_event_open(2) of `attr` on CPU 0 for all processes (pid -1), no group, close-on-exec.
/// Any pointer in `attr` (a kprobe's function name) must point to memory that lives until this
/// returns.
fn perf_event_open(attr: &mut PerfEventAttr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, exclusively borrowed perf_event_attr of the size it declares
    // (PERF_ATTR_SIZE_VER0); the callers keep what its pointers point to alive for the call;
    // pid -1 / cpu 0 / group -1 are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *mut PerfEventAttr,
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
mod tests;
