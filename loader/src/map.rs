//! Live BPF maps: lookup, update, delete, key iteration, batch reads, per-CPU values, pinning.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::elf::MapSpec;
use crate::error::{Error, Result};
use crate::kernel_files::is_on_bpffs;
use crate::sys::{self, MapFd};
use crate::uapi::MapType;

/// `BPF_ANY`: create the entry or replace it.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create the entry only if it does not exist.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: replace the entry only if it exists.
pub const BPF_EXIST: u64 = 2;

/// A BPF map in the kernel. Closing it (drop) frees the map once no program or pin holds it.
#[derive(Debug)]
pub struct Map {
    name: String,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    fd: MapFd,
    pinned: Option<PathBuf>,
}

pub(crate) fn path_cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::InvalidArgument(format!("{}: path contains a NUL byte", path.display()))
    })
}

/// Pins `fd` at `path` on bpffs, creating missing parent directories with mode 0700.
pub(crate) fn pin_fd(fd: BorrowedFd<'_>, path: &Path, what: &str) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| Error::io(parent, e))?;
    if !is_on_bpffs(parent) {
        return Err(Error::NotBpffs(parent.to_path_buf()));
    }
    let c = path_cstring(path)?;
    sys::obj_pin(fd, &c).map_err(|e| Error::sys(format!("pin {what} at {}", path.display()), e))
}

impl Map {
    /// Creates a map from a spec (BPF_MAP_CREATE). Data maps get their initial value written;
    /// `.rodata` is then frozen. Maps that need BTF (socket storage) must come through
    /// [`crate::Object::load`], which loads the object's BTF.
    pub fn create(spec: &MapSpec) -> Result<Map> {
        Map::create_with_btf(spec, None)
    }

    pub(crate) fn create_with_btf(spec: &MapSpec, btf: Option<BorrowedFd<'_>>) -> Result<Map> {
        let btf = match (spec.needs_btf(), btf) {
            (false, _) => None,
            (true, Some(fd)) => Some((fd, spec.btf_key_type_id, spec.btf_value_type_id)),
            (true, None) => {
                return Err(Error::MapDefinition {
                    map: spec.name.clone(),
                    reason: "this map type needs the object's BTF; load it with Object::load"
                        .into(),
                })
            }
        };
        let attr = sys::MapCreate {
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            flags: spec.flags,
            name: &spec.name,
            btf,
        };
        let fd = sys::memlock_retry(|| MapFd::create(&attr)).map_err(|e| {
            Error::sys(
                format!(
                    "create map `{}` (type {}, key {} B, value {} B, {} entries, flags {:#x})",
                    spec.name,
                    spec.map_type.value(),
                    spec.key_size,
                    spec.value_size,
                    spec.max_entries,
                    spec.flags
                ),
                e,
            )
        })?;
        let map = Map {
            name: spec.name.clone(),
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            flags: spec.flags,
            fd,
            pinned: None,
        };
        if let Some(data) = &spec.data {
            if data.len() != spec.value_size as usize {
                return Err(Error::InvalidArgument(format!(
                    "map `{}`: initial data is {} bytes, value size is {}",
                    spec.name,
                    data.len(),
                    spec.value_size
                )));
            }
            // .bss starts zeroed in the kernel: write it only if set_global changed it.
            if spec.kind != crate::MapKind::Bss || data.iter().any(|&b| b != 0) {
                map.update(&0u32.to_ne_bytes(), data, BPF_ANY)?;
            }
            if spec.kind == crate::MapKind::Rodata {
                map.fd
                    .freeze()
                    .map_err(|e| Error::sys(format!("freeze map `{}`", spec.name), e))?;
            }
        }
        Ok(map)
    }

    /// Opens a map pinned on bpffs (BPF_OBJ_GET); its name, type and sizes come from the kernel.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Map> {
        let path = path.as_ref();
        let c = path_cstring(path)?;
        let (fd, info) = MapFd::from_pin(&c)
            .map_err(|e| Error::sys(format!("open pinned map {}", path.display()), e))?;
        let len = info
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(info.name.len());
        Ok(Map {
            name: String::from_utf8_lossy(&info.name[..len]).into_owned(),
            map_type: MapType::from(info.map_type),
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            flags: info.map_flags,
            fd,
            pinned: None,
        })
    }

    /// Pins the map at `path` on bpffs (BPF_OBJ_PIN), creating parent directories (mode 0700).
    /// The pin keeps the map alive after this process exits; [`Map::unpin`] removes it.
    pub fn pin(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        pin_fd(self.fd.as_fd(), path, &format!("map `{}`", self.name))?;
        self.pinned = Some(path.to_path_buf());
        Ok(())
    }

    /// Removes the pin made by [`Map::pin`] (no-op if not pinned by this handle).
    pub fn unpin(&mut self) -> Result<()> {
        if let Some(path) = self.pinned.take() {
            std::fs::remove_file(&path).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// Is this a map of the object's `.maps` section (not a data section such as `.rodata`)?
    pub fn is_btf_defined(&self) -> bool {
        !self.name.starts_with('.')
    }

    /// Names the map as its spec does (the kernel keeps only 15 bytes of a name).
    pub(crate) fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }

    /// Where [`Map::pin`] pinned this map.
    pub fn pin_path(&self) -> Option<&Path> {
        self.pinned.as_deref()
    }

    /// Map name (as given at creation; the kernel keeps the first 15 bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `BPF_MAP_TYPE_*`.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// Value size in bytes (of one CPU's value for per-CPU maps).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Capacity.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// `BPF_F_*` flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Are values per CPU?
    pub fn is_per_cpu(&self) -> bool {
        self.map_type.is_per_cpu()
    }

    /// Length of the value buffers [`Map::lookup`] returns and [`Map::update`] takes:
    /// `value_size`, or for per-CPU maps `value_size` rounded up to 8, times [`crate::possible_cpus`].
    pub fn value_len(&self) -> usize {
        self.fd.value_len()
    }

    /// The map's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The kernel's id of this map.
    pub fn id(&self) -> Result<u32> {
        Ok(self.fd.info().map_err(|e| self.err("get info of", e))?.id)
    }

    fn err(&self, what: &str, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::InvalidInput if e.raw_os_error().is_none() => {
                Error::InvalidArgument(format!("{what} map `{}`: {e}", self.name))
            }
            _ => Error::sys(format!("{what} map `{}`", self.name), e),
        }
    }

    /// Looks `key` up; the value is [`Map::value_len`] bytes (all CPUs' values for per-CPU maps).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut value = vec![0u8; self.value_len()];
        match self.fd.lookup(key, &mut value) {
            Ok(true) => Ok(Some(value)),
            Ok(false) => Ok(None),
            Err(e) => Err(self.err("lookup in", e)),
        }
    }

    /// Looks `key` up in a per-CPU map: one `value_size`-byte value per possible CPU.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        Ok(self.lookup(key)?.map(|raw| self.split_percpu(&raw)))
    }

    /// Creates or replaces an entry. `value` is [`Map::value_len`] bytes; `flags` is
    /// [`BPF_ANY`], [`BPF_NOEXIST`] or [`BPF_EXIST`]. A full map gives [`Error::MapFull`]; an
    /// existing key with [`BPF_NOEXIST`] an error whose [`Error::raw_os_error`] is `EEXIST`.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.fd
            .update(key, value, flags)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::E2BIG) | Some(libc::ENOSPC) => Error::MapFull {
                    map: self.name.clone(),
                    max_entries: self.max_entries,
                },
                _ => self.err("update", e),
            })
    }

    /// Updates a per-CPU map entry with one `value_size`-byte value per possible CPU.
    pub fn update_percpu(&self, key: &[u8], values: &[Vec<u8>], flags: u64) -> Result<()> {
        let slot = (self.value_size as usize).div_ceil(8) * 8;
        if !self.is_per_cpu() || values.len() * slot != self.value_len() {
            return Err(Error::InvalidArgument(format!(
                "map `{}`: update_percpu needs a per-CPU map and one value per possible CPU",
                self.name
            )));
        }
        let mut raw = vec![0u8; self.value_len()];
        for (chunk, v) in raw.chunks_mut(slot).zip(values) {
            if v.len() != self.value_size as usize {
                return Err(Error::InvalidArgument(format!(
                    "map `{}`: per-CPU value is {} bytes, expected {}",
                    self.name,
                    v.len(),
                    self.value_size
                )));
            }
            chunk[..v.len()].copy_from_slice(v);
        }
        self.update(key, &raw, flags)
    }

    /// Deletes `key`; `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.fd.delete(key).map_err(|e| self.err("delete from", e))
    }

    /// Iterates over the keys (BPF_MAP_GET_NEXT_KEY).
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            map: self,
            prev: None,
            done: false,
        }
    }

    /// Every entry as `(key, value)` (values as [`Map::lookup`] returns them), read with
    /// BPF_MAP_LOOKUP_BATCH (Linux 5.6); on kernels or map types without batch support
    /// (EINVAL/ENOTSUPP), by key iteration and lookups.
    pub fn lookup_batch(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.lookup_batch_sized(self.max_entries as usize)
    }

    /// [`Map::lookup_batch`] with buffers sized for about `expected` entries rather than for
    /// `max_entries`: a per-CPU map sized for thousands of entries on a machine with hundreds of
    /// CPUs would otherwise allocate (and the kernel fill) megabytes per read to return a handful.
    /// Any number of entries is still read: more than `expected` take more batches.
    pub fn lookup_batch_sized(&self, expected: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.for_each_entry(expected, |key, value| {
            out.push((key.to_vec(), value.to_vec()))
        })?;
        Ok(out)
    }

    /// Calls `visit(key, value)` for every entry (values as [`Map::lookup`] returns them), read as
    /// [`Map::lookup_batch_sized`] reads them but without copying each entry out: what a reader
    /// of thousands of entries per interval wants.
    pub fn for_each_entry(
        &self,
        expected: usize,
        mut visit: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        match self.try_lookup_batch(batch_entries(expected, self.max_entries), &mut visit) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(sys::ENOTSUPP)
                ) =>
            {
                log::debug!(
                    "map `{}`: batch lookup unsupported ({e}), iterating keys",
                    self.name
                );
                for (key, value) in self.entries_by_key()? {
                    visit(&key, &value);
                }
                Ok(())
            }
            other => other,
        }
    }

    fn try_lookup_batch(
        &self,
        mut count: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let key_size = self.key_size as usize;
        let value_len = self.value_len();
        let token_len = key_size.max(8);
        let mut token_in: Option<Vec<u8>> = None;
        let mut token_out = vec![0u8; token_len];
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        loop {
            keys.resize(count * key_size, 0);
            values.resize(count * value_len, 0);
            match self
                .fd
                .lookup_batch(token_in.as_deref(), &mut token_out, &mut keys, &mut values)
            {
                Ok((n, done)) => {
                    for i in 0..n.min(count) {
                        visit(
                            &keys[i * key_size..(i + 1) * key_size],
                            &values[i * value_len..(i + 1) * value_len],
                        );
                    }
                    if done {
                        return Ok(());
                    }
                    token_in = Some(token_out.clone());
                }
                // A hash bucket holds more entries than `count`: retry with a bigger buffer.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && count < 1 << 20 => count *= 2,
                Err(e) => return Err(self.err("batch lookup in", e)),
            }
        }
    }

    fn entries_by_key(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for key in self.keys() {
            let key = key?;
            // An entry deleted between the two calls is skipped.
            if let Some(value) = self.lookup(&key)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Splits a per-CPU value buffer into one `value_size`-byte value per possible CPU.
    pub fn split_percpu(&self, raw: &[u8]) -> Vec<Vec<u8>> {
        let slot = (self.value_size as usize).div_ceil(8) * 8;
        if !self.is_per_cpu() || slot == 0 {
            return vec![raw.to_vec()];
        }
        raw.chunks(slot)
            .map(|c| c[..c.len().min(self.value_size as usize)].to_vec())
            .collect()
    }

    /// Reads a value made of native-endian `u64` fields (like `struct podnet_counters`) and sums
    /// each field over all CPUs for per-CPU maps (or just decodes it for other maps).
    pub fn sum_percpu_u64(&self, raw: &[u8]) -> Result<Vec<u64>> {
        let mut sums = vec![0u64; self.value_size as usize / 8];
        self.sum_percpu_u64_into(raw, &mut sums)?;
        Ok(sums)
    }

    /// [`Map::sum_percpu_u64`] into `sums` (one slot per u64 field; extra slots stay as they
    /// are, missing ones are an error), without allocating.
    pub fn sum_percpu_u64_into(&self, raw: &[u8], sums: &mut [u64]) -> Result<()> {
        let fields = self.value_size as usize / 8;
        if !self.value_size.is_multiple_of(8)
            || raw.len() != self.value_len()
            || sums.len() < fields
        {
            return Err(Error::InvalidArgument(format!(
                "map `{}`: value of {} bytes is not {} u64 fields per CPU",
                self.name,
                raw.len(),
                sums.len()
            )));
        }
        let sums = &mut sums[..fields];
        sums.fill(0);
        for cpu in raw.chunks(self.value_size as usize) {
            for (sum, field) in sums.iter_mut().zip(cpu.chunks_exact(8)) {
                let v = u64::from_ne_bytes(field.try_into().expect("chunks_exact(8)"));
                *sum = sum.wrapping_add(v);
            }
        }
        Ok(())
    }
}

/// Iterator over a map's keys; see [`Map::keys`]. Keys deleted while iterating may make a hash
/// map restart from its first key, as the kernel does.
pub struct Keys<'a> {
    map: &'a Map,
    prev: Option<Vec<u8>>,
    done: bool,
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut next = vec![0u8; self.map.key_size as usize];
        match self.map.fd.next_key(self.prev.as_deref(), &mut next) {
            Ok(true) => {
                self.prev = Some(next.clone());
                Some(Ok(next))
            }
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(self.map.err("get next key of", e)))
            }
        }
    }
}

/// Entries per batch read when about `expected` entries are expected in a map of `max_entries`:
/// room for a quarter more (entries registered between the count and the read), never more than
/// the map holds, and at most 4096 per batch.
fn batch_entries(expected: usize, max_entries: u32) -> usize {
    let cap = (max_entries as usize).clamp(1, 4096);
    expected
        .saturating_add(expected / 4)
        .saturating_add(1)
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::batch_entries;

    #[test]
    fn batch_buffers_follow_the_expected_count_not_the_capacity() {
        // podnet's counters map for --max-pods 1024 holds 8192 cgroups; three are registered.
        assert_eq!(batch_entries(3, 8192), 4);
        assert_eq!(batch_entries(0, 8192), 1);
        assert_eq!(batch_entries(100, 8192), 126);
        // Never more than the map holds, nor more than 4096 per batch.
        assert_eq!(batch_entries(100, 16), 16);
        assert_eq!(batch_entries(1 << 20, 1 << 20), 4096);
        assert_eq!(batch_entries(usize::MAX, 0), 1);
    }
}
