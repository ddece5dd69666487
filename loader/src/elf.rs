//! Parsing a BPF object (64-bit little-endian `EM_BPF` relocatable ELF, as `clang -target bpf -c`
//! writes it) into an [`ObjectSpec`]: maps, programs, license, globals and relocations.
//!
//! Pure code, no syscalls: everything here is unit-tested on real and crafted objects.

use std::collections::{HashMap, HashSet};

use object::elf::{FileHeader64, Rel64, Sym64};
use object::read::elf::{FileHeader, SectionHeader, SectionTable, Sym, SymbolTable};
use object::{LittleEndian as LE, SectionIndex, SymbolIndex};

use crate::btf::Btf;
use crate::error::{Error, Result};
use crate::reloc::{self, Function, Insn, Reloc, Target};
mod kind;
mod maps;

pub use kind::ProgramKind;
use maps::{data_kind, data_map};
pub use maps::{MapKind, MapSpec};

const EM_BPF: u16 = 247;
const ET_REL: u16 = 1;
const R_BPF_64_64: u32 = 1;
const R_BPF_64_32: u32 = 10;
/// Largest `.bss` section accepted (its bytes are allocated, not read from the file).
const MAX_BSS: u64 = 64 << 20;

/// `BPF_F_RDONLY_PROG`: the map is read-only for programs.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// A program of the object: one global function in a program section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Function (symbol) name.
    pub name: String,
    /// ELF section name.
    pub section: String,
    /// Program type and attach type.
    pub kind: ProgramKind,
    pub(crate) function: usize,
}

/// A global variable in a data section (found by its ELF symbol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalVar {
    /// Variable name.
    pub name: String,
    /// Name of the data map holding it (`.rodata`, `.data`, `.bss`, ...).
    pub map: String,
    /// Byte offset in the map's value.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    map_index: usize,
}

/// A parsed BPF object: what to create and load, before any syscall.
#[derive(Clone, Debug)]
pub struct ObjectSpec {
    maps: Vec<MapSpec>,
    programs: Vec<ProgramSpec>,
    license: String,
    globals: Vec<GlobalVar>,
    pub(crate) functions: Vec<Function>,
    /// `.BTF` ready for BPF_BTF_LOAD, when the object has one whose data sections could be fixed up.
    pub(crate) kernel_btf: Option<Vec<u8>>,
}

fn elf_err(e: impl std::fmt::Display) -> Error {
    Error::Elf(e.to_string())
}

/// One section of the object, as the parser needs it.
struct Section<'a> {
    name: &'a str,
    data: &'a [u8],
    size: u64,
}

struct Parser<'a> {
    sections: SectionTable<'a, FileHeader64<LE>>,
    symbols: SymbolTable<'a, FileHeader64<LE>>,
    secs: Vec<Option<Section<'a>>>,
    data: &'a [u8],
}

impl<'a> Parser<'a> {
    fn section(&self, index: SectionIndex) -> Result<&Section<'a>> {
        self.secs
            .get(index.0)
            .and_then(|s| s.as_ref())
            .ok_or_else(|| Error::Elf(format!("section index {} out of range", index.0)))
    }

    fn symbol(&self, index: SymbolIndex) -> Result<(&'a Sym64<LE>, &'a str, Option<SectionIndex>)> {
        let sym = self.symbols.symbol(index).map_err(elf_err)?;
        let name = self.symbols.symbol_name(LE, sym).map_err(elf_err)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::Elf(format!("symbol {} name is not UTF-8", index.0)))?;
        let section = self
            .symbols
            .symbol_section(LE, sym, index)
            .map_err(elf_err)?;
        Ok((sym, name, section))
    }
}

/// Checks the ELF identification and header fields before handing the file to the ELF reader,
/// so each wrong kind of file gets its own error.
fn check_header(data: &[u8]) -> Result<()> {
    if data.len() < 6 || &data[..4] != b"\x7fELF" {
        return Err(
            if data.len() < 6 && b"\x7fELF".starts_with(data) && !data.is_empty() {
                Error::Elf(format!("truncated: {} bytes", data.len()))
            } else {
                Error::NotElf
            },
        );
    }
    match data[4] {
        1 => return Err(Error::Not64Bit),
        2 => {}
        c => return Err(Error::Elf(format!("unknown ELF class {c}"))),
    }
    match data[5] {
        2 => return Err(Error::BigEndian),
        1 => {}
        d => return Err(Error::Elf(format!("unknown ELF data encoding {d}"))),
    }
    if data.len() < 64 {
        return Err(Error::Elf(format!(
            "truncated: {} bytes, shorter than the 64-byte ELF header",
            data.len()
        )));
    }
    let e_type = u16::from_le_bytes([data[16], data[17]]);
    let e_machine = u16::from_le_bytes([data[18], data[19]]);
    if e_machine != EM_BPF {
        return Err(Error::WrongMachine(e_machine));
    }
    if e_type != ET_REL {
        return Err(Error::NotRelocatable(e_type));
    }
    Ok(())
}

impl ObjectSpec {
    /// Parses a BPF object file. Never panics: every malformed input is an error.
    pub fn parse(data: &[u8]) -> Result<ObjectSpec> {
        check_header(data)?;
        let header = FileHeader64::<LE>::parse(data).map_err(elf_err)?;
        let sections = header.sections(LE, data).map_err(elf_err)?;
        let symbols = sections
            .symbols(LE, data, object::elf::SHT_SYMTAB)
            .map_err(elf_err)?;
        let mut secs = Vec::with_capacity(sections.len());
        for (_, sh) in sections.enumerate() {
            let name = sections.section_name(LE, sh).map_err(elf_err)?;
            let Ok(name) = std::str::from_utf8(name) else {
                secs.push(None);
                continue;
            };
            let size = sh.sh_size(LE);
            let data = if sh.sh_type(LE) == object::elf::SHT_NOBITS {
                &[][..]
            } else {
                sh.data(LE, data).map_err(elf_err)?
            };
            secs.push(Some(Section { name, data, size }));
        }
        let p = Parser {
            sections,
            symbols,
            secs,
            data,
        };
        p.build()
    }

    /// All maps, in creation order.
    pub fn maps(&self) -> &[MapSpec] {
        &self.maps
    }

    /// All programs.
    pub fn programs(&self) -> &[ProgramSpec] {
        &self.programs
    }

    /// The `license` section's string (empty if the object has none).
    pub fn license(&self) -> &str {
        &self.license
    }

    /// Global variables of `.rodata`/`.data`/`.bss`.
    pub fn globals(&self) -> &[GlobalVar] {
        &self.globals
    }

    /// The map named `name`.
    pub fn map(&self, name: &str) -> Result<&MapSpec> {
        self.maps
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::UnknownMap(name.into()))
    }

    /// The map named `name`, to change it before load (e.g. `max_entries`).
    pub fn map_mut(&mut self, name: &str) -> Result<&mut MapSpec> {
        self.maps
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::UnknownMap(name.into()))
    }

    /// The program named `name`.
    pub fn program(&self, name: &str) -> Result<&ProgramSpec> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownProgram(name.into()))
    }

    /// Leaves the program named `name` out of what [`crate::Object::load`] loads: for a program
    /// this kernel cannot load (an fentry/fexit program where the kernel has no BTF) that the
    /// caller can do without. Its code stays in the object's functions (other programs may
    /// share it).
    pub fn remove_program(&mut self, name: &str) -> Result<ProgramSpec> {
        let i = self
            .programs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error::UnknownProgram(name.into()))?;
        Ok(self.programs.remove(i))
    }

    /// The global variable named `name`.
    pub fn global(&self, name: &str) -> Result<&GlobalVar> {
        self.globals
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| Error::UnknownGlobal(name.into()))
    }

    /// Sets the initial value of a global variable, typically a `const volatile` in `.rodata`
    /// that programs read as a constant. `value` must be exactly the variable's size.
    pub fn set_global(&mut self, name: &str, value: &[u8]) -> Result<()> {
        let g = self.global(name)?.clone();
        if value.len() != g.size {
            return Err(Error::GlobalSize {
                name: name.into(),
                expected: g.size,
                actual: value.len(),
            });
        }
        let map = &mut self.maps[g.map_index];
        let data = map
            .data
            .get_or_insert_with(|| vec![0; map.value_size as usize]);
        let slot = data.get_mut(g.offset..g.offset + g.size).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "global `{name}` lies outside the {} bytes of `{}`",
                map.value_size, map.name
            ))
        })?;
        slot.copy_from_slice(value);
        Ok(())
    }

    /// The instructions of program `name` as BPF_PROG_LOAD receives them: its code, then every
    /// function it calls (each once), with calls resolved and map references pointing at
    /// `map_fds[i]` for `maps()[i]`.
    pub fn relocated_instructions(&self, name: &str, map_fds: &[i32]) -> Result<Vec<Insn>> {
        let prog = self.program(name)?;
        reloc::link(&self.functions, prog.function, map_fds)
    }
}

/// What one pass over the section headers finds.
struct SectionScan {
    license: String,
    btf: Option<Btf>,
    /// Index of `.maps`.
    maps_section: Option<usize>,
    /// One map per data section, with the section's index.
    data_maps: Vec<(usize, MapSpec)>,
    /// Sections holding code, with the program kind of program sections (`None` for `.text`).
    code_sections: Vec<(usize, Option<ProgramKind>)>,
}

/// The functions of every code section, the programs among them and the globals of the data
/// sections, from one pass over the symbol table.
struct SymbolScan {
    functions: Vec<Function>,
    ranges: FunctionRanges,
    programs: Vec<ProgramSpec>,
    globals: Vec<GlobalVar>,
}

/// Per code section: (first insn, end insn, function index), sorted by first instruction.
#[derive(Default)]
struct FunctionRanges(HashMap<usize, Vec<(usize, usize, usize)>>);

impl FunctionRanges {
    /// The function holding instruction `insn` of code section `section`, and the instruction's
    /// index inside it.
    fn find(&self, section: usize, insn: usize) -> Option<(usize, usize)> {
        let r = self.0.get(&section)?;
        let pos = r
            .partition_point(|&(start, _, _)| start <= insn)
            .checked_sub(1)?;
        let (start, end, f) = r[pos];
        (insn < end).then_some((f, insn - start))
    }
}

/// Where relocations may point: the maps of `.maps` by offset and the maps of data sections.
struct MapTargets {
    maps_section: Option<usize>,
    map_at_offset: HashMap<u64, usize>,
    data_map_of_section: HashMap<usize, usize>,
}

impl<'a> Parser<'a> {
    /// Parses the object in steps: sections (license, BTF, data sections, code sections), maps,
    /// functions and programs, relocations, then the BTF the kernel gets.
    fn build(self) -> Result<ObjectSpec> {
        let SectionScan {
            license,
            btf,
            maps_section,
            data_maps,
            code_sections,
        } = self.scan_sections()?;

        // Maps from .maps first, placed by their symbols' offsets; then the data sections' maps.
        let (mut maps, map_at_offset) = self.btf_maps(maps_section, btf.as_ref())?;
        let mut data_map_of_section: HashMap<usize, usize> = HashMap::new();
        for (section, spec) in data_maps {
            data_map_of_section.insert(section, maps.len());
            maps.push(spec);
        }

        let SymbolScan {
            mut functions,
            ranges,
            mut programs,
            globals,
        } = self.scan_symbols(&code_sections, &maps, &data_map_of_section)?;

        let targets = MapTargets {
            maps_section,
            map_at_offset,
            data_map_of_section,
        };
        let relocated = self.relocate(&code_sections, &ranges, &targets, &maps, &mut functions)?;
        resolve_local_calls(&ranges, &relocated, &mut functions)?;

        let kernel_btf = btf.as_ref().and_then(|btf| self.kernel_btf(btf));

        programs.sort_by(|a: &ProgramSpec, b| (&a.section, &a.name).cmp(&(&b.section, &b.name)));
        Ok(ObjectSpec {
            maps,
            programs,
            license,
            globals,
            functions,
            kernel_btf,
        })
    }

    /// One pass over the sections: the license, `.BTF`, where `.maps` is, a map for each data
    /// section, and which sections hold code.
    fn scan_sections(&self) -> Result<SectionScan> {
        let mut scan = SectionScan {
            license: String::new(),
            btf: None,
            maps_section: None,
            data_maps: Vec::new(),
            code_sections: Vec::new(),
        };
        for (index, sec) in self.secs.iter().enumerate().skip(1) {
            let Some(sec) = sec else { continue };
            let sh = self
                .sections
                .section(SectionIndex(index))
                .map_err(elf_err)?;
            let flags = sh.sh_flags(LE).0;
            let executable = flags & object::elf::SHF_EXECINSTR.0 != 0;
            let alloc = flags & object::elf::SHF_ALLOC.0 != 0;
            match sec.name {
                "license" => {
                    let end = sec
                        .data
                        .iter()
                        .position(|&b| b == 0)
                        .unwrap_or(sec.data.len());
                    scan.license = std::str::from_utf8(&sec.data[..end])
                        .map_err(|_| Error::Elf("license is not UTF-8".into()))?
                        .to_string();
                }
                ".BTF" => scan.btf = Some(Btf::parse(sec.data)?),
                ".maps" => scan.maps_section = Some(index),
                ".text" => scan.code_sections.push((index, None)),
                name if executable => match ProgramKind::from_section(name) {
                    Some(kind) => scan.code_sections.push((index, Some(kind))),
                    None if sec.size == 0 => {}
                    None => return Err(Error::UnsupportedSection(name.into())),
                },
                name if alloc && sec.size > 0 => {
                    if let Some(kind) = data_kind(name) {
                        scan.data_maps.push((index, data_map(sec, kind)?));
                    }
                }
                _ => {}
            }
        }
        Ok(scan)
    }

    /// One pass over the symbols: every FUNC symbol of a code section is a function (a program
    /// when global in a program section), every OBJECT symbol of a data section a global.
    fn scan_symbols(
        &self,
        code_sections: &[(usize, Option<ProgramKind>)],
        maps: &[MapSpec],
        data_map_of_section: &HashMap<usize, usize>,
    ) -> Result<SymbolScan> {
        let mut scan = SymbolScan {
            functions: Vec::new(),
            ranges: FunctionRanges::default(),
            programs: Vec::new(),
            globals: Vec::new(),
        };
        for (i, sym) in self.symbols.enumerate().skip(1) {
            let (_, name, section) = self.symbol(i)?;
            let Some(section) = section else { continue };
            let value = sym.st_value(LE);
            let size = sym.st_size(LE);
            if sym.st_type() == object::elf::STT_OBJECT {
                if let Some(&map_index) = data_map_of_section.get(&section.0) {
                    let map = &maps[map_index];
                    if value
                        .checked_add(size)
                        .is_none_or(|end| end > u64::from(map.value_size))
                    {
                        return Err(Error::Elf(format!(
                            "global `{name}` lies outside section {}",
                            map.name
                        )));
                    }
                    scan.globals.push(GlobalVar {
                        name: name.into(),
                        map: map.name.clone(),
                        offset: value as usize,
                        size: size as usize,
                        map_index,
                    });
                }
                continue;
            }
            if sym.st_type() != object::elf::STT_FUNC {
                continue;
            }
            let Some((_, kind)) = code_sections.iter().find(|(s, _)| *s == section.0) else {
                continue;
            };
            let sec = self.section(section)?;
            if value % 8 != 0 || size % 8 != 0 || size == 0 {
                return Err(Error::Elf(format!(
                    "function `{name}` has a misaligned or empty range {value}+{size}"
                )));
            }
            let bytes = value
                .checked_add(size)
                .and_then(|end| sec.data.get(value as usize..end as usize))
                .ok_or_else(|| {
                    Error::Elf(format!(
                        "function `{name}` ({value}+{size}) lies outside section {}",
                        sec.name
                    ))
                })?;
            let start = (value / 8) as usize;
            let index = scan.functions.len();
            scan.functions.push(Function {
                name: name.into(),
                section: sec.name.into(),
                insns: Insn::decode(bytes),
                relocs: Vec::new(),
            });
            scan.ranges.0.entry(section.0).or_default().push((
                start,
                start + (size / 8) as usize,
                index,
            ));
            if let Some(kind) = kind {
                if sym.st_bind() == object::elf::STB_GLOBAL {
                    scan.programs.push(ProgramSpec {
                        name: name.into(),
                        section: sec.name.into(),
                        kind: kind.clone(),
                        function: index,
                    });
                }
            }
        }
        for r in scan.ranges.0.values_mut() {
            r.sort_unstable();
            if r.windows(2).any(|w| w[0].1 > w[1].0) {
                return Err(Error::Elf("overlapping functions in one section".into()));
            }
        }
        Ok(scan)
    }

    /// Applies the relocations of code sections to `functions`. Returns the (function, insn)
    /// pairs that carry a relocation.
    fn relocate(
        &self,
        code_sections: &[(usize, Option<ProgramKind>)],
        ranges: &FunctionRanges,
        targets: &MapTargets,
        maps: &[MapSpec],
        functions: &mut [Function],
    ) -> Result<HashSet<(usize, usize)>> {
        let mut relocated: HashSet<(usize, usize)> = HashSet::new();
        for sh in self.sections.iter() {
            if sh.sh_type(LE) != object::elf::SHT_REL {
                continue;
            }
            let target = sh.sh_info(LE) as usize;
            if !code_sections.iter().any(|(s, _)| *s == target) {
                continue;
            }
            let tsec = self.section(SectionIndex(target))?;
            let rels: &[Rel64<LE>] = sh.data_as_array(LE, self.data).map_err(elf_err)?;
            for rel in rels {
                let rerr = |reason: String| Error::Relocation {
                    section: tsec.name.into(),
                    reason,
                };
                let offset = rel.r_offset.get(LE);
                if offset % 8 != 0
                    || offset
                        .checked_add(8)
                        .is_none_or(|end| end > tsec.data.len() as u64)
                {
                    return Err(rerr(format!(
                        "offset {offset} out of range (section is {} bytes)",
                        tsec.data.len()
                    )));
                }
                let at = (offset / 8) as usize;
                let (function, insn) = ranges
                    .find(target, at)
                    .ok_or_else(|| rerr(format!("instruction {at} is not inside any function")))?;
                let code = functions[function].insns[insn];
                let (sym, sym_name, sym_section) = self
                    .symbol(SymbolIndex(rel.r_sym(LE) as usize))
                    .map_err(|e| rerr(e.to_string()))?;
                let sym_section = sym_section
                    .ok_or_else(|| rerr(format!("symbol `{sym_name}` is undefined (extern)")))?;
                let sym_value = sym.st_value(LE);
                let target = match rel.r_type(LE).0 {
                    R_BPF_64_64 if code.code == reloc::LD_IMM64 => {
                        let off = (sym_value as i64)
                            .checked_add(i64::from(code.imm))
                            .filter(|o| *o >= 0);
                        let off = off
                            .ok_or_else(|| rerr(format!("negative offset into `{sym_name}`")))?
                            as u64;
                        if Some(sym_section.0) == targets.maps_section {
                            let map = *targets.map_at_offset.get(&off).ok_or_else(|| {
                                rerr(format!("`{sym_name}`+{off} is not a map in `.maps`"))
                            })?;
                            Target::MapFd { map }
                        } else if let Some(&map) = targets.data_map_of_section.get(&sym_section.0) {
                            if off >= u64::from(maps[map].value_size) {
                                return Err(rerr(format!(
                                    "offset {off} past the end of `{}`",
                                    maps[map].name
                                )));
                            }
                            Target::MapValue {
                                map,
                                offset: off as u32,
                            }
                        } else {
                            let s = self.section(sym_section).map(|s| s.name).unwrap_or("?");
                            return Err(rerr(format!("`{sym_name}` is in section `{s}`, which is neither .maps nor a data section")));
                        }
                    }
                    R_BPF_64_32 if code.is_pseudo_call() => {
                        let callee = (sym_value / 8) as i64 + i64::from(code.imm) + 1;
                        let callee = usize::try_from(callee).map_err(|_| {
                            rerr(format!("call to `{sym_name}` before its section"))
                        })?;
                        match ranges.find(sym_section.0, callee) {
                            Some((f, 0)) => Target::Call { function: f },
                            _ => {
                                return Err(rerr(format!(
                                "call target `{sym_name}`+{callee} is not the start of a function"
                            )))
                            }
                        }
                    }
                    t => {
                        return Err(rerr(format!(
                            "unsupported relocation type {t} on instruction opcode {:#04x}",
                            code.code
                        )))
                    }
                };
                relocated.insert((function, insn));
                functions[function].relocs.push(Reloc { insn, target });
            }
        }
        Ok(relocated)
    }

    /// `.BTF` with its data sections' sizes and variable offsets filled in, ready for
    /// BPF_BTF_LOAD; `None` (logged) when it cannot be prepared.
    fn kernel_btf(&self, btf: &Btf) -> Option<Vec<u8>> {
        let size_of = |name: &str| {
            self.secs
                .iter()
                .flatten()
                .find(|s| s.name == name)
                .and_then(|s| u32::try_from(s.size).ok())
        };
        let var_offset = |sec: &str, var: &str| {
            self.symbols.enumerate().skip(1).find_map(|(i, sym)| {
                let (_, name, section) = self.symbol(i).ok()?;
                let in_sec = self.section(section?).ok()?.name == sec;
                (in_sec && name == var)
                    .then(|| u32::try_from(sym.st_value(LE)).ok())
                    .flatten()
            })
        };
        match btf.for_kernel(size_of, var_offset) {
            Ok(blob) => Some(blob),
            Err(e) => {
                log::debug!("BTF not prepared for the kernel: {e}");
                None
            }
        }
    }
}

/// Calls between functions of one section carry no relocation: resolves them (every pseudo
/// call not in `relocated`).
fn resolve_local_calls(
    ranges: &FunctionRanges,
    relocated: &HashSet<(usize, usize)>,
    functions: &mut [Function],
) -> Result<()> {
    for (&section, r) in &ranges.0 {
        for &(start, _, f) in r {
            for (insn, code) in functions[f].insns.clone().iter().enumerate() {
                if !code.is_pseudo_call() || relocated.contains(&(f, insn)) {
                    continue;
                }
                let callee = (start + insn) as i64 + i64::from(code.imm) + 1;
                let target = usize::try_from(callee)
                    .ok()
                    .and_then(|c| ranges.find(section, c));
                match target {
                    Some((callee, 0)) => functions[f].relocs.push(Reloc {
                        insn,
                        target: Target::Call { function: callee },
                    }),
                    _ => {
                        return Err(Error::Relocation {
                            section: functions[f].section.clone(),
                            reason: format!(
                                "call at instruction {insn} of `{}` does not reach a function",
                                functions[f].name
                            ),
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
