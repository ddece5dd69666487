//! A minimal reader of the `.BTF` section: just enough to read BTF-defined maps from the `.maps`
//! data section, and to prepare the blob for BPF_BTF_LOAD (maps such as `SK_STORAGE` need it).
//!
//! Every length, offset and type id is checked; bad input is an [`Error::Btf`], never a panic.

use crate::error::{Error, Result};

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// How many typedef/const/volatile/pointer hops a type may take before it is called a loop.
const MAX_DEPTH: usize = 32;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// `BTF_KIND_FUNC`.
pub(crate) const FUNC: u32 = KIND_FUNC;

/// Bytes that follow the 12-byte record of a type of `kind` with `vlen` members, or `None` for a
/// kind this reader does not know.
pub(crate) fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        _ => return None,
    })
}

fn err(msg: impl Into<String>) -> Error {
    Error::Btf(msg.into())
}

fn u32_at(data: &[u8], off: usize) -> Result<u32> {
    data.get(off..off.checked_add(4).ok_or_else(|| err("offset overflow"))?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| err(format!("truncated at byte {off}")))
}

/// One member of a struct or union.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub name_off: u32,
    pub ty: u32,
}

/// One variable of a DATASEC, with the byte position of its `offset` field in the blob.
#[derive(Clone, Debug)]
pub(crate) struct SecVar {
    pub ty: u32,
    #[cfg_attr(not(test), allow(dead_code))]
    pub offset: u32,
    pub offset_pos: usize,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// Types with a byte size: int, enum, enum64, float, struct, union.
    Sized {
        size: u32,
    },
    Struct {
        size: u32,
        members: Vec<Member>,
    },
    /// Pointer to `ty`.
    Ptr {
        ty: u32,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    /// Typedef, const, volatile, restrict, type tag: the same type as `ty`.
    Alias {
        ty: u32,
    },
    Var {
        ty: u32,
    },
    /// A data section; `size_pos` is the byte position of its `size` field in the blob.
    Datasec {
        #[cfg_attr(not(test), allow(dead_code))]
        size: u32,
        size_pos: usize,
        vars: Vec<SecVar>,
    },
    /// A function (its prototype is `size_or_type`, unused here).
    Func,
    /// Anything else (fwd, func_proto, decl_tag): never a map attribute.
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct Type {
    pub name_off: u32,
    pub kind: Kind,
}

/// A parsed `.BTF` section.
#[derive(Clone, Debug)]
pub(crate) struct Btf {
    /// The whole section, as given.
    pub raw: Vec<u8>,
    /// Types by id; index 0 is `void`.
    types: Vec<Type>,
    str_start: usize,
    str_len: usize,
}

/// A map defined in the `.maps` section, as BTF describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BtfMapDef {
    pub name: String,
    pub map_type: Option<u32>,
    pub key_size: Option<u32>,
    pub value_size: Option<u32>,
    pub max_entries: Option<u32>,
    pub flags: u32,
    /// BTF type ids of the key and value (0 when sizes were given with `__uint`).
    pub key_type_id: u32,
    pub value_type_id: u32,
}

impl Btf {
    /// Parses and validates a `.BTF` section.
    pub fn parse(data: &[u8]) -> Result<Btf> {
        if data.len() < HEADER_LEN {
            return Err(err(format!(
                "{} bytes, shorter than the 24-byte header",
                data.len()
            )));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != MAGIC {
            return Err(err(format!(
                "bad magic {magic:#06x}, expected {MAGIC:#06x} (little-endian BTF)"
            )));
        }
        if data[2] != 1 {
            return Err(err(format!("unsupported version {}", data[2])));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(err(format!("header length {hdr_len} out of bounds")));
        }
        let body = data.len() - hdr_len;
        let in_body = |off: usize, len: usize| off.checked_add(len).is_some_and(|end| end <= body);
        if !in_body(type_off, type_len) {
            return Err(err(format!(
                "type section {type_off}+{type_len} exceeds the {body} bytes after the header"
            )));
        }
        if !in_body(str_off, str_len) {
            return Err(err(format!(
                "string section {str_off}+{str_len} exceeds the {body} bytes after the header"
            )));
        }
        let str_start = hdr_len + str_off;
        if str_len == 0 || data[str_start] != 0 || data[str_start + str_len - 1] != 0 {
            return Err(err("string section must start and end with a NUL byte"));
        }
        let mut btf = Btf {
            raw: data.to_vec(),
            types: vec![Type {
                name_off: 0,
                kind: Kind::Other,
            }],
            str_start,
            str_len,
        };
        let start = hdr_len + type_off;
        let end = start + type_len;
        let mut pos = start;
        while pos < end {
            let (ty, next) = btf.parse_type(pos, end)?;
            if ty.name_off as usize >= str_len {
                return Err(err(format!(
                    "type {} has name offset {} past the string section",
                    btf.types.len(),
                    ty.name_off
                )));
            }
            btf.types.push(ty);
            pos = next;
        }
        let count = btf.types.len() as u32;
        for (id, t) in btf.types.iter().enumerate() {
            let refs: Vec<u32> = match &t.kind {
                Kind::Ptr { ty } | Kind::Alias { ty } | Kind::Var { ty } => vec![*ty],
                Kind::Array { elem, .. } => vec![*elem],
                Kind::Struct { members, .. } => members.iter().map(|m| m.ty).collect(),
                Kind::Datasec { vars, .. } => vars.iter().map(|v| v.ty).collect(),
                Kind::Sized { .. } | Kind::Func | Kind::Other => vec![],
            };
            if let Some(bad) = refs.into_iter().find(|&r| r >= count) {
                return Err(err(format!(
                    "type {id} refers to type id {bad}, but there are only {count} types"
                )));
            }
        }
        Ok(btf)
    }

    /// Parses the type record at `pos`; returns it and the position of the next one.
    fn parse_type(&self, pos: usize, end: usize) -> Result<(Type, usize)> {
        let d = &self.raw[..end];
        let name_off = u32_at(d, pos)?;
        let info = u32_at(d, pos + 4)?;
        let size_or_type = u32_at(d, pos + 8)?;
        let raw_kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let extra = pos + 12;
        let (kind, next) = match raw_kind {
            KIND_INT => (Kind::Sized { size: size_or_type }, extra + 4),
            KIND_ENUM => (Kind::Sized { size: size_or_type }, extra + 8 * vlen),
            KIND_ENUM64 => (Kind::Sized { size: size_or_type }, extra + 12 * vlen),
            KIND_FLOAT => (Kind::Sized { size: size_or_type }, extra),
            KIND_PTR => (Kind::Ptr { ty: size_or_type }, extra),
            KIND_ARRAY => {
                let elem = u32_at(d, extra)?;
                let nelems = u32_at(d, extra + 8)?;
                u32_at(d, extra + 4)?; // index type
                (Kind::Array { elem, nelems }, extra + 12)
            }
            KIND_STRUCT | KIND_UNION => {
                let mut members = Vec::with_capacity(vlen.min(1024));
                for i in 0..vlen {
                    let m = extra + 12 * i;
                    members.push(Member {
                        name_off: u32_at(d, m)?,
                        ty: u32_at(d, m + 4)?,
                    });
                    u32_at(d, m + 8)?;
                }
                (
                    Kind::Struct {
                        size: size_or_type,
                        members,
                    },
                    extra + 12 * vlen,
                )
            }
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                (Kind::Alias { ty: size_or_type }, extra)
            }
            KIND_VAR => (Kind::Var { ty: size_or_type }, extra + 4),
            KIND_DATASEC => {
                let mut vars = Vec::with_capacity(vlen.min(1024));
                for i in 0..vlen {
                    let v = extra + 12 * i;
                    vars.push(SecVar {
                        ty: u32_at(d, v)?,
                        offset: u32_at(d, v + 4)?,
                        offset_pos: v + 4,
                    });
                    u32_at(d, v + 8)?;
                }
                (
                    Kind::Datasec {
                        size: size_or_type,
                        size_pos: pos + 8,
                        vars,
                    },
                    extra + 12 * vlen,
                )
            }
            KIND_FUNC => (Kind::Func, extra),
            KIND_FWD => (Kind::Other, extra),
            KIND_FUNC_PROTO => (Kind::Other, extra + 8 * vlen),
            KIND_DECL_TAG => (Kind::Other, extra + 4),
            other => {
                return Err(err(format!(
                    "type {} has unknown kind {other}",
                    self.types.len()
                )))
            }
        };
        // The streaming reader of the kernel's BTF (`kernel_btf`) skips records by this table.
        debug_assert_eq!(Some(next - extra), extra_len(raw_kind, vlen));
        if next > end {
            return Err(err(format!(
                "type {} runs past the end of the type section",
                self.types.len()
            )));
        }
        Ok((Type { name_off, kind }, next))
    }

    /// The id of the function (`BTF_KIND_FUNC`) named `name`, if there is one (the oracle for
    /// the streaming reader of the kernel's BTF, [`crate::kernel_btf`]).
    #[cfg(test)]
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.types.iter().enumerate().find_map(|(id, t)| {
            (matches!(t.kind, Kind::Func) && self.name(t.name_off).ok() == Some(name))
                .then_some(id as u32)
        })
    }

    /// The string at `off` in the string section.
    pub fn name(&self, off: u32) -> Result<&str> {
        let off = off as usize;
        if off >= self.str_len {
            return Err(err(format!("string offset {off} past the string section")));
        }
        let s = &self.raw[self.str_start + off..self.str_start + self.str_len];
        let len = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..len])
            .map_err(|_| err(format!("string at offset {off} is not UTF-8")))
    }

    fn get(&self, id: u32) -> Result<&Type> {
        self.types
            .get(id as usize)
            .ok_or_else(|| err(format!("type id {id} out of range")))
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn skip_aliases(&self, mut id: u32) -> Result<u32> {
        for _ in 0..MAX_DEPTH {
            match self.get(id)?.kind {
                Kind::Alias { ty } => id = ty,
                _ => return Ok(id),
            }
        }
        Err(err(format!(
            "type loop (more than {MAX_DEPTH} typedefs/qualifiers) at type id {id}"
        )))
    }

    /// Byte size of a type.
    pub fn size_of(&self, id: u32) -> Result<u32> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: usize) -> Result<u32> {
        if depth > MAX_DEPTH {
            return Err(err(format!(
                "type loop (nesting deeper than {MAX_DEPTH}) at type id {id}"
            )));
        }
        if id == 0 {
            return Err(err("void has no size"));
        }
        match &self.get(id)?.kind {
            Kind::Sized { size } | Kind::Struct { size, .. } => Ok(*size),
            Kind::Ptr { .. } => Ok(8),
            Kind::Alias { ty } => self.size_of_depth(*ty, depth + 1),
            Kind::Array { elem, nelems } => self
                .size_of_depth(*elem, depth + 1)?
                .checked_mul(*nelems)
                .ok_or_else(|| err(format!("array type {id} is larger than 4 GiB"))),
            _ => Err(err(format!("type id {id} has no size"))),
        }
    }

    /// Finds the DATASEC named `name`.
    fn datasec(&self, name: &str) -> Result<Option<&Type>> {
        for t in &self.types {
            if matches!(t.kind, Kind::Datasec { .. }) && self.name(t.name_off)? == name {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// `__uint(name, N)` is `int (*name)[N]`: the element count of the pointed-to array.
    fn uint_attr(&self, ty: u32) -> Result<u32> {
        let ptr = self.skip_aliases(ty)?;
        let Kind::Ptr { ty: target } = self.get(ptr)?.kind else {
            return Err(err(format!(
                "type id {ptr} is not a pointer (expected __uint)"
            )));
        };
        let arr = self.skip_aliases(target)?;
        match self.get(arr)?.kind {
            Kind::Array { nelems, .. } => Ok(nelems),
            _ => Err(err(format!(
                "type id {arr} is not an array (expected __uint)"
            ))),
        }
    }

    /// `__type(name, T)` is `T *name`: the pointed-to type id and its size.
    fn type_attr(&self, ty: u32) -> Result<(u32, u32)> {
        let ptr = self.skip_aliases(ty)?;
        let Kind::Ptr { ty: target } = self.get(ptr)?.kind else {
            return Err(err(format!(
                "type id {ptr} is not a pointer (expected __type)"
            )));
        };
        Ok((target, self.size_of(target)?))
    }

    /// Reads every map definition of the `.maps` DATASEC (empty if there is none).
    pub fn map_defs(&self) -> Result<Vec<BtfMapDef>> {
        let Some(sec) = self.datasec(".maps")? else {
            return Ok(Vec::new());
        };
        let Kind::Datasec { vars, .. } = &sec.kind else {
            unreachable!("datasec() returns DATASECs")
        };
        let mut defs = Vec::with_capacity(vars.len());
        for v in vars {
            let var = self.get(v.ty)?;
            let Kind::Var { ty } = var.kind else {
                return Err(err(format!(
                    "entry type id {} of .maps is not a variable",
                    v.ty
                )));
            };
            let name = self.name(var.name_off)?.to_string();
            let map_err = |reason: String| Error::MapDefinition {
                map: name.clone(),
                reason,
            };
            let st = self.skip_aliases(ty)?;
            let Kind::Struct { members, .. } = &self.get(st)?.kind else {
                return Err(map_err(format!("type id {st} is not a struct")));
            };
            let mut def = BtfMapDef {
                name: name.clone(),
                ..Default::default()
            };
            for m in members {
                let attr = self.name(m.name_off)?;
                let with = |e: Error| map_err(format!("attribute `{attr}`: {e}"));
                match attr {
                    "type" => def.map_type = Some(self.uint_attr(m.ty).map_err(with)?),
                    "max_entries" => def.max_entries = Some(self.uint_attr(m.ty).map_err(with)?),
                    "map_flags" => def.flags = self.uint_attr(m.ty).map_err(with)?,
                    "key_size" => set_size(&mut def.key_size, self.uint_attr(m.ty).map_err(with)?).map_err(map_err)?,
                    "value_size" => {
                        set_size(&mut def.value_size, self.uint_attr(m.ty).map_err(with)?).map_err(map_err)?
                    }
                    "key" => {
                        let (id, size) = self.type_attr(m.ty).map_err(with)?;
                        set_size(&mut def.key_size, size).map_err(map_err)?;
                        def.key_type_id = id;
                    }
                    "value" => {
                        let (id, size) = self.type_attr(m.ty).map_err(with)?;
                        set_size(&mut def.value_size, size).map_err(map_err)?;
                        def.value_type_id = id;
                    }
                    "pinning" if self.uint_attr(m.ty).map_err(with)? == 0 => {}
                    other => {
                        return Err(map_err(format!(
                            "unsupported attribute `{other}` (podnet's loader reads type, key, value, key_size, \
                             value_size, max_entries and map_flags)"
                        )))
                    }
                }
            }
            defs.push(def);
        }
        Ok(defs)
    }

    /// The blob with every DATASEC's size and variable offsets filled in (the compiler leaves them
    /// zero in relocatable objects; BPF_BTF_LOAD rejects that). `section_size(name)` gives a
    /// section's size, `var_offset(section, var)` a variable's offset, `None` when unknown.
    pub fn for_kernel(
        &self,
        section_size: impl Fn(&str) -> Option<u32>,
        var_offset: impl Fn(&str, &str) -> Option<u32>,
    ) -> Result<Vec<u8>> {
        let mut out = self.raw.clone();
        for t in &self.types {
            let Kind::Datasec { size_pos, vars, .. } = &t.kind else {
                continue;
            };
            let sec = self.name(t.name_off)?;
            let size = section_size(sec)
                .ok_or_else(|| err(format!("DATASEC `{sec}` has no ELF section")))?;
            out[*size_pos..*size_pos + 4].copy_from_slice(&size.to_le_bytes());
            for v in vars {
                let var = self.name(self.get(v.ty)?.name_off)?;
                let off = var_offset(sec, var).ok_or_else(|| {
                    err(format!(
                        "variable `{var}` of DATASEC `{sec}` has no ELF symbol"
                    ))
                })?;
                out[v.offset_pos..v.offset_pos + 4].copy_from_slice(&off.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Size and variables (`(name, offset)`) of the DATASEC `name`, as stored.
    #[cfg(test)]
    pub fn datasec_layout(&self, name: &str) -> Result<Option<DatasecLayout>> {
        let Some(t) = self.datasec(name)? else {
            return Ok(None);
        };
        let Kind::Datasec { size, vars, .. } = &t.kind else {
            return Ok(None);
        };
        let vars = vars
            .iter()
            .map(|v| Ok((self.name(self.get(v.ty)?.name_off)?.to_string(), v.offset)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((*size, vars)))
    }
}

/// A DATASEC's size and its variables as `(name, offset)`.
#[cfg(test)]
pub(crate) type DatasecLayout = (u32, Vec<(String, u32)>);

fn set_size(slot: &mut Option<u32>, size: u32) -> Result<(), String> {
    match *slot {
        Some(old) if old != size => Err(format!("key/value size given twice, as {old} and {size}")),
        _ => {
            *slot = Some(size);
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod builder;

#[cfg(test)]
mod tests;
