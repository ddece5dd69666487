//! Maps of a BPF object: the BTF-defined maps of `.maps` and one array map per data section
//! (`.rodata`, `.data`, `.bss`).

use std::collections::HashMap;

use object::read::elf::Sym;
use object::{LittleEndian as LE, SectionIndex};

use super::{Parser, Section, BPF_F_RDONLY_PROG, MAX_BSS};
use crate::btf::Btf;
use crate::error::{Error, Result};
use crate::uapi::MapType;

/// Where a map comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// A BTF-defined map in the `.maps` section.
    Btf,
    /// `.rodata` (or `.rodata.*`): `const` globals, read-only for programs, frozen after load.
    Rodata,
    /// `.data` (or `.data.*`): initialized globals.
    Data,
    /// `.bss` (or `.bss.*`): zero-initialized globals.
    Bss,
}

/// A map to create: from `.maps`, or a one-entry array holding a data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Name: the variable name for `.maps` maps, the section name (`.rodata`, ...) for data maps.
    pub name: String,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: MapType,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps).
    pub value_size: u32,
    /// Capacity; set it before load to size the map (0 for socket/cgroup storage maps).
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
    /// Initial value of entry 0 for data maps (`value_size` bytes), `None` for `.maps` maps.
    pub data: Option<Vec<u8>>,
    /// Where the map comes from.
    pub kind: MapKind,
    pub(crate) btf_key_type_id: u32,
    pub(crate) btf_value_type_id: u32,
}

impl MapSpec {
    /// Does creating this map need the object's BTF (key and value type ids)?
    pub fn needs_btf(&self) -> bool {
        self.map_type.needs_btf()
    }
}

/// The kind of data map a section name makes, if any.
pub(super) fn data_kind(name: &str) -> Option<MapKind> {
    let is = |prefix: &str| {
        name == prefix
            || name
                .strip_prefix(prefix)
                .is_some_and(|r| r.starts_with('.'))
    };
    if is(".rodata") {
        Some(MapKind::Rodata)
    } else if is(".data") {
        Some(MapKind::Data)
    } else if is(".bss") {
        Some(MapKind::Bss)
    } else {
        None
    }
}

/// The one-entry array map holding data section `sec` (of kind `kind`).
pub(super) fn data_map(sec: &Section<'_>, kind: MapKind) -> Result<MapSpec> {
    let name = sec.name;
    let data = if kind == MapKind::Bss {
        if sec.size > MAX_BSS {
            return Err(Error::Elf(format!(
                "section {name} is {} bytes, larger than {MAX_BSS}",
                sec.size
            )));
        }
        vec![0; sec.size as usize]
    } else {
        sec.data.to_vec()
    };
    let value_size = u32::try_from(data.len())
        .map_err(|_| Error::Elf(format!("section {name} is larger than 4 GiB")))?;
    let flags = if kind == MapKind::Rodata {
        BPF_F_RDONLY_PROG
    } else {
        0
    };
    Ok(MapSpec {
        name: name.into(),
        map_type: MapType::Array,
        key_size: 4,
        value_size,
        max_entries: 1,
        flags,
        data: Some(data),
        kind,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
    })
}

impl Parser<'_> {
    /// The maps of `.maps` (section `maps_section`), defined in `btf`, in definition order, and
    /// the index of the map at each offset of `.maps` (where relocations point).
    pub(super) fn btf_maps(
        &self,
        maps_section: Option<usize>,
        btf: Option<&Btf>,
    ) -> Result<(Vec<MapSpec>, HashMap<u64, usize>)> {
        let mut maps: Vec<MapSpec> = Vec::new();
        let mut map_at_offset: HashMap<u64, usize> = HashMap::new();
        let Some(maps_index) = maps_section else {
            return Ok((maps, map_at_offset));
        };
        let defs = match btf {
            Some(btf) => btf.map_defs()?,
            None => {
                return Err(Error::Elf(
                    "`.maps` section without `.BTF`: compile with `-g`".into(),
                ))
            }
        };
        let mut symbols_by_name = HashMap::new();
        for (i, sym) in self.symbols.enumerate().skip(1) {
            let (_, name, section) = self.symbol(i)?;
            if section == Some(SectionIndex(maps_index)) && sym.st_type() == object::elf::STT_OBJECT
            {
                symbols_by_name.insert(name, sym.st_value(LE));
            }
        }
        for def in defs {
            let map_err = |reason: &str| Error::MapDefinition {
                map: def.name.clone(),
                reason: reason.into(),
            };
            let map_type = MapType::from(
                def.map_type
                    .ok_or_else(|| map_err("no `type` (add __uint(type, BPF_MAP_TYPE_...))"))?,
            );
            let max_entries = match def.max_entries {
                Some(n) => n,
                None if map_type.is_storage() => 0,
                None => return Err(map_err("no `max_entries` (add __uint(max_entries, N))")),
            };
            let offset = *symbols_by_name
                .get(def.name.as_str())
                .ok_or_else(|| map_err("no ELF symbol in `.maps`"))?;
            map_at_offset.insert(offset, maps.len());
            maps.push(MapSpec {
                name: def.name.clone(),
                map_type,
                key_size: def.key_size.unwrap_or(0),
                value_size: def.value_size.unwrap_or(0),
                max_entries,
                flags: def.flags,
                data: None,
                kind: MapKind::Btf,
                btf_key_type_id: def.key_type_id,
                btf_value_type_id: def.value_type_id,
            });
        }
        Ok((maps, map_at_offset))
    }
}
