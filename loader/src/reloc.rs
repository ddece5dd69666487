//! Linking one program: map references in `ld_imm64` instructions and BPF-to-BPF calls.
//!
//! Pure code over instruction vectors: the ELF parser turns every relocation (and every call
//! between functions of one section, which needs none in the object) into a [`Reloc`] on a
//! [`Function`], and [`link`] builds the final instruction stream of a program from them.

use std::collections::{HashMap, VecDeque};

use crate::error::{Error, Result};

/// Opcode of the first half of `ld_imm64` (BPF_LD | BPF_IMM | BPF_DW).
pub const LD_IMM64: u8 = 0x18;
/// Opcode of `call` (BPF_JMP | BPF_CALL).
pub const CALL: u8 = 0x85;
/// `src_reg` of an `ld_imm64` whose imm is a map fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of an `ld_imm64` whose imm is a map fd and whose second imm is an offset into the
/// map's single value.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `src_reg` of a `call` to another BPF function (imm = relative instruction offset).
pub const PSEUDO_CALL: u8 = 1;

/// One 8-byte BPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high nibble.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

impl Insn {
    /// Decodes one instruction from 8 little-endian bytes.
    pub fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Decodes a byte slice whose length is a multiple of 8 (trailing bytes are ignored).
    pub fn decode(bytes: &[u8]) -> Vec<Insn> {
        bytes
            .chunks_exact(8)
            .map(|c| Insn::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    }

    /// Source register.
    pub fn src_reg(&self) -> u8 {
        self.regs >> 4
    }

    /// Destination register.
    pub fn dst_reg(&self) -> u8 {
        self.regs & 0x0f
    }

    /// Sets the source register.
    pub fn set_src_reg(&mut self, src: u8) {
        self.regs = (self.regs & 0x0f) | (src << 4);
    }

    /// Is this a call to another BPF function?
    pub fn is_pseudo_call(&self) -> bool {
        self.code == CALL && self.src_reg() == PSEUDO_CALL
    }
}

/// What a relocated instruction refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `ld_imm64` of a map: index into the object's maps.
    MapFd { map: usize },
    /// `ld_imm64` of an address inside the single value of a data map (`.rodata`, `.data`, `.bss`).
    MapValue { map: usize, offset: u32 },
    /// `call` of another function: index into the object's functions.
    Call { function: usize },
}

/// A relocation of the instruction at `insn` (index within its function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reloc {
    pub insn: usize,
    pub target: Target,
}

/// A function of the object: a program entry point or a subprogram.
#[derive(Clone, Debug)]
pub(crate) struct Function {
    pub name: String,
    pub section: String,
    pub insns: Vec<Insn>,
    pub relocs: Vec<Reloc>,
}

fn reloc_err(f: &Function, reason: String) -> Error {
    Error::Relocation {
        section: f.section.clone(),
        reason: format!("function `{}`: {reason}", f.name),
    }
}

/// Builds the instructions of the program whose entry is `functions[entry]`: its own code, then
/// each function it calls (transitively), each appended exactly once, with call immediates set to
/// relative offsets and map references set to `map_fds[map]`.
pub(crate) fn link(functions: &[Function], entry: usize, map_fds: &[i32]) -> Result<Vec<Insn>> {
    let first = functions
        .get(entry)
        .ok_or_else(|| Error::InvalidArgument(format!("no function with index {entry}")))?;
    let mut out: Vec<Insn> = Vec::with_capacity(first.insns.len());
    let mut placed: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::new();
    placed.insert(entry, 0);
    out.extend_from_slice(&first.insns);
    queue.push_back(entry);

    while let Some(index) = queue.pop_front() {
        let f = &functions[index];
        let base = placed[&index];
        for r in &f.relocs {
            let at = base + r.insn;
            let insn = *f.insns.get(r.insn).ok_or_else(|| {
                reloc_err(
                    f,
                    format!(
                        "instruction {} out of range ({} instructions)",
                        r.insn,
                        f.insns.len()
                    ),
                )
            })?;
            match r.target {
                Target::MapFd { map } | Target::MapValue { map, .. } => {
                    if insn.code != LD_IMM64 || r.insn + 1 >= f.insns.len() {
                        return Err(reloc_err(
                            f,
                            format!("map reference at instruction {} is not an ld_imm64", r.insn),
                        ));
                    }
                    let fd = *map_fds.get(map).ok_or_else(|| {
                        reloc_err(
                            f,
                            format!("map index {map} out of range ({} maps)", map_fds.len()),
                        )
                    })?;
                    let (src, second_imm) = match r.target {
                        Target::MapValue { offset, .. } => (PSEUDO_MAP_VALUE, offset as i32),
                        _ => (PSEUDO_MAP_FD, 0),
                    };
                    out[at].set_src_reg(src);
                    out[at].imm = fd;
                    out[at + 1].imm = second_imm;
                }
                Target::Call { function } => {
                    if !insn.is_pseudo_call() {
                        return Err(reloc_err(
                            f,
                            format!(
                                "call relocation at instruction {} is not a BPF-to-BPF call",
                                r.insn
                            ),
                        ));
                    }
                    let callee = functions.get(function).ok_or_else(|| {
                        reloc_err(f, format!("call target {function} is not a function"))
                    })?;
                    let start = match placed.get(&function) {
                        Some(&start) => start,
                        None => {
                            let start = out.len();
                            placed.insert(function, start);
                            out.extend_from_slice(&callee.insns);
                            queue.push_back(function);
                            start
                        }
                    };
                    let rel = start as i64 - (at as i64 + 1);
                    out[at].imm =
                        i32::try_from(rel).map_err(|_| reloc_err(f, "program too large".into()))?;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld_imm64(dst: u8) -> [Insn; 2] {
        [
            Insn {
                code: LD_IMM64,
                regs: dst,
                off: 0,
                imm: 0,
            },
            Insn::default(),
        ]
    }
    fn call(imm: i32) -> Insn {
        Insn {
            code: CALL,
            regs: PSEUDO_CALL << 4,
            off: 0,
            imm,
        }
    }
    fn exit() -> Insn {
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        }
    }
    fn mov(dst: u8, imm: i32) -> Insn {
        Insn {
            code: 0xb7,
            regs: dst,
            off: 0,
            imm,
        }
    }
    fn func(name: &str, insns: Vec<Insn>, relocs: Vec<Reloc>) -> Function {
        Function {
            name: name.into(),
            section: "test".into(),
            insns,
            relocs,
        }
    }

    #[test]
    fn map_fd_and_map_value_relocations() {
        let [a, b] = ld_imm64(1);
        let [c, d] = ld_imm64(2);
        let f = func(
            "prog",
            vec![a, b, c, d, exit()],
            vec![
                Reloc {
                    insn: 0,
                    target: Target::MapFd { map: 1 },
                },
                Reloc {
                    insn: 2,
                    target: Target::MapValue { map: 0, offset: 24 },
                },
            ],
        );
        let out = link(&[f], 0, &[7, 9]).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(
            (out[0].src_reg(), out[0].dst_reg(), out[0].imm, out[1].imm),
            (PSEUDO_MAP_FD, 1, 9, 0)
        );
        assert_eq!(
            (out[2].src_reg(), out[2].dst_reg(), out[2].imm, out[3].imm),
            (PSEUDO_MAP_VALUE, 2, 7, 24)
        );
    }

    #[test]
    fn calls_append_each_callee_once() {
        // prog calls a twice and b once; a calls b. Expected layout: prog, a, b.
        let prog = func(
            "prog",
            vec![call(-1), call(-1), call(-1), exit()],
            vec![
                Reloc {
                    insn: 0,
                    target: Target::Call { function: 1 },
                },
                Reloc {
                    insn: 1,
                    target: Target::Call { function: 2 },
                },
                Reloc {
                    insn: 2,
                    target: Target::Call { function: 1 },
                },
            ],
        );
        let a = func(
            "a",
            vec![mov(0, 1), call(-1), exit()],
            vec![Reloc {
                insn: 1,
                target: Target::Call { function: 2 },
            }],
        );
        let b = func("b", vec![mov(0, 2), exit()], vec![]);
        let out = link(&[prog, a, b], 0, &[]).unwrap();
        assert_eq!(out.len(), 4 + 3 + 2);
        // a starts at 4, b at 7 (b is appended once, when prog first calls it).
        assert_eq!(out[0].imm, 4 - 1);
        assert_eq!(out[1].imm, 7 - 2);
        assert_eq!(out[2].imm, 4 - 3);
        assert_eq!(out[4], mov(0, 1));
        assert_eq!(out[5].imm, 7 - 6);
        assert_eq!(out[7], mov(0, 2));
    }

    #[test]
    fn recursive_call_points_back_to_the_entry() {
        let prog = func(
            "prog",
            vec![call(-1), exit()],
            vec![Reloc {
                insn: 0,
                target: Target::Call { function: 0 },
            }],
        );
        let out = link(&[prog], 0, &[]).unwrap();
        assert_eq!((out.len(), out[0].imm), (2, -1));
    }

    #[test]
    fn bad_relocations_are_errors() {
        let [a, b] = ld_imm64(1);
        // Offset past the end.
        let f = func(
            "p",
            vec![a, b],
            vec![Reloc {
                insn: 5,
                target: Target::MapFd { map: 0 },
            }],
        );
        assert!(matches!(link(&[f], 0, &[3]), Err(Error::Relocation { .. })));
        // Map reference on a non-ld_imm64 instruction.
        let f = func(
            "p",
            vec![exit(), exit()],
            vec![Reloc {
                insn: 0,
                target: Target::MapFd { map: 0 },
            }],
        );
        assert!(matches!(link(&[f], 0, &[3]), Err(Error::Relocation { .. })));
        // ld_imm64 as the last instruction (no second half).
        let f = func(
            "p",
            vec![a],
            vec![Reloc {
                insn: 0,
                target: Target::MapFd { map: 0 },
            }],
        );
        assert!(matches!(link(&[f], 0, &[3]), Err(Error::Relocation { .. })));
        // Unknown map.
        let f = func(
            "p",
            vec![a, b],
            vec![Reloc {
                insn: 0,
                target: Target::MapFd { map: 2 },
            }],
        );
        assert!(matches!(link(&[f], 0, &[3]), Err(Error::Relocation { .. })));
        // Call relocation on something that is not a pseudo call, and to a missing function.
        let f = func(
            "p",
            vec![exit()],
            vec![Reloc {
                insn: 0,
                target: Target::Call { function: 0 },
            }],
        );
        assert!(matches!(link(&[f], 0, &[]), Err(Error::Relocation { .. })));
        let f = func(
            "p",
            vec![call(-1)],
            vec![Reloc {
                insn: 0,
                target: Target::Call { function: 4 },
            }],
        );
        assert!(matches!(link(&[f], 0, &[]), Err(Error::Relocation { .. })));
        assert!(matches!(link(&[], 0, &[]), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn insn_decoding_and_registers() {
        let i = Insn::from_bytes([0x18, 0x21, 0xfe, 0xff, 0x01, 0x00, 0x00, 0x80]);
        assert_eq!(
            (i.code, i.dst_reg(), i.src_reg(), i.off, i.imm),
            (0x18, 1, 2, -2, i32::MIN + 1)
        );
        let mut j = i;
        j.set_src_reg(PSEUDO_MAP_VALUE);
        assert_eq!((j.dst_reg(), j.src_reg()), (1, 2));
        assert_eq!(Insn::decode(&[0u8; 20]).len(), 2);
    }
}
