//! Finding a kernel function's id in the kernel's own BTF (`/sys/kernel/btf/vmlinux`), which
//! fentry/fexit programs are loaded against. The file is about 5 MB: it is streamed, never held
//! in memory, so a one-shot `podnet stats` stays small.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::btf::{extra_len, FUNC};
use crate::error::{Error, Result};

/// The kernel's own BTF, which fentry/fexit programs are loaded against.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The id of kernel function `name` in the kernel's BTF ([`VMLINUX_BTF`]): what BPF_PROG_LOAD of
/// an fentry/fexit program on it needs. [`Error::NoTracing`] when the kernel has no BTF or the
/// function is not in it (inlined, renamed, or older or newer than the kernel). The answer is
/// kept for the process: probing and loading ask for the same function, and each read streams
/// the whole file.
pub fn kernel_btf_function_id(name: &str) -> Result<u32> {
    static FOUND: OnceLock<Mutex<HashMap<String, Option<u32>>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    let cached = found.lock().expect("BTF id cache").get(name).copied();
    let id = match cached {
        Some(id) => id,
        None => {
            let id = read_function_id(name)?;
            found
                .lock()
                .expect("BTF id cache")
                .insert(name.to_string(), id);
            id
        }
    };
    id.ok_or_else(|| Error::NoTracing(format!("no function {name} in {VMLINUX_BTF}")))
}

/// [`kernel_btf_function_id`] without the cache: `None` when the file has no such function.
fn read_function_id(name: &str) -> Result<Option<u32>> {
    let path = Path::new(VMLINUX_BTF);
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoTracing(format!(
                "no {VMLINUX_BTF} (the kernel needs CONFIG_DEBUG_INFO_BTF)"
            )))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    func_id(file, name).map_err(|e| Error::NoTracing(format!("cannot read {VMLINUX_BTF}: {e}")))
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// The id of the `BTF_KIND_FUNC` named `name` in the raw BTF `r` holds (a `.BTF` blob with its
/// header), reading it front to back with a small buffer: first the string section, for the
/// offsets at which `name` is a whole string or a string's suffix (a name may point into a longer
/// string), then the type records, skipping each by its kind.
pub(crate) fn func_id(r: impl Read + Seek, name: &str) -> std::io::Result<Option<u32>> {
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut hdr = [0u8; 24];
    r.read_exact(&mut hdr)?;
    let word = |i: usize| u32::from_le_bytes(hdr[i..i + 4].try_into().expect("4 bytes")) as u64;
    if u16::from_le_bytes([hdr[0], hdr[1]]) != 0xeb9f || hdr[2] != 1 {
        return Err(bad("not little-endian BTF version 1"));
    }
    let (hdr_len, type_off, type_len, str_off, str_len) =
        (word(4), word(8), word(12), word(16), word(20));
    if hdr_len < 24 {
        return Err(bad(format!("header length {hdr_len}")));
    }

    // Offsets in the string section at which `name` starts and runs to a NUL.
    r.seek(SeekFrom::Start(hdr_len + str_off))?;
    let mut offsets = Vec::new();
    let (mut at, mut s) = (0u64, Vec::new());
    while at < str_len {
        s.clear();
        let n = (&mut r).take(str_len - at).read_until(0, &mut s)?;
        if n == 0 {
            return Err(bad("string section truncated"));
        }
        let text = s.strip_suffix(&[0]).unwrap_or(&s);
        if text.ends_with(name.as_bytes()) {
            offsets.push(at + (text.len() - name.len()) as u64);
        }
        at += n as u64;
    }
    if offsets.is_empty() {
        return Ok(None);
    }

    r.seek(SeekFrom::Start(hdr_len + type_off))?;
    let (mut at, mut id) = (0u64, 0u32);
    let mut rec = [0u8; 12];
    while at < type_len {
        r.read_exact(&mut rec)?;
        id += 1;
        let name_off = u32::from_le_bytes(rec[0..4].try_into().expect("4 bytes")) as u64;
        let info = u32::from_le_bytes(rec[4..8].try_into().expect("4 bytes"));
        let kind = (info >> 24) & 0x1f;
        if kind == FUNC && offsets.contains(&name_off) {
            return Ok(Some(id));
        }
        let extra = extra_len(kind, (info & 0xffff) as usize)
            .ok_or_else(|| bad(format!("type {id} has unknown kind {kind}")))?;
        r.seek_relative(extra as i64)?;
        at += 12 + extra as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::BtfBuilder;
    use std::io::Cursor;

    #[test]
    fn finds_functions_by_whole_name_only() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        let proto = b.raw("", 13, 0, int, &[]);
        b.raw("xx_open", FUNC, 0, proto, &[]);
        let st = b.strukt("s", 4, &[("open", int)]);
        let open = b.raw("open", FUNC, 0, proto, &[]);
        b.typedef("t", st);
        let blob = b.build();
        assert_eq!(func_id(Cursor::new(&blob), "open").unwrap(), Some(open));
        assert_eq!(
            func_id(Cursor::new(&blob), "xx_open").unwrap(),
            Some(open - 2)
        );
        assert_eq!(func_id(Cursor::new(&blob), "pen_x").unwrap(), None);
        // A struct member named like the function is not a function.
        assert_eq!(func_id(Cursor::new(&blob), "s").unwrap(), None);
        assert!(func_id(Cursor::new(&blob[..30]), "open").is_err());
    }

    /// The streaming reader agrees with the whole-blob parser on the kernel's own BTF, where
    /// there is one (every kernel podnet's test matrix boots has it).
    #[test]
    fn agrees_with_the_full_parser_on_the_running_kernel() {
        let Ok(raw) = std::fs::read(VMLINUX_BTF) else {
            return;
        };
        let btf = crate::btf::Btf::parse(&raw).unwrap();
        for name in [
            "do_sys_openat2",
            "security_file_open",
            "no_such_function_anywhere",
        ] {
            assert_eq!(
                func_id(Cursor::new(&raw), name).unwrap(),
                btf.func_id(name),
                "{name}"
            );
        }
    }
}
