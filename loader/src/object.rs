//! Loading a whole object: maps first, then programs linked against them.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use std::path::Path;

use crate::elf::{MapKind, ObjectSpec, ProgramKind};
use crate::error::{Error, Result};
use crate::map::Map;
use crate::program::Program;
use crate::reloc;
use crate::sys;

/// A loaded BPF object: its maps and programs, live in the kernel. Dropping it closes every fd;
/// attached [`crate::Link`]s and pins keep what they need alive on their own.
#[derive(Debug)]
pub struct Object {
    maps: Vec<Map>,
    programs: Vec<Program>,
}

fn load_btf(spec: &ObjectSpec) -> Result<OwnedFd> {
    let blob = spec.kernel_btf.as_ref().ok_or_else(|| {
        Error::Btf("the object's .BTF could not be prepared for the kernel".into())
    })?;
    match sys::memlock_retry(|| sys::btf_load(blob, &mut [])) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 1 << 20];
            let e = sys::btf_load(blob, &mut log).err().unwrap_or(first);
            let tail = crate::program::log_tail(&log, 10);
            Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => Error::sys("load BTF", e),
                _ => Error::Btf(format!(
                    "the kernel rejected the object's BTF ({e}): {tail}"
                )),
            })
        }
    }
}

impl Object {
    /// Creates the spec's maps (writing and freezing data sections), then relocates and loads
    /// every program (BPF_PROG_LOAD). Loads the object's BTF only if a map needs it (socket
    /// storage). Where the kernel charges BPF memory to RLIMIT_MEMLOCK (before 5.11) and refuses
    /// with EPERM, the limit is raised and the call repeated. On error nothing stays loaded.
    pub fn load(spec: &ObjectSpec) -> Result<Object> {
        let btf = if spec.maps().iter().any(|m| m.needs_btf()) {
            Some(load_btf(spec)?)
        } else {
            None
        };
        let mut maps = Vec::with_capacity(spec.maps().len());
        for m in spec.maps() {
            maps.push(Map::create_with_btf(m, btf.as_ref().map(|f| f.as_fd()))?);
        }
        let fds: Vec<i32> = maps.iter().map(|m| m.fd().as_raw_fd()).collect();
        let mut programs = Vec::with_capacity(spec.programs().len());
        for p in spec.programs() {
            let insns = reloc::link(&spec.functions, p.function, &fds)?;
            programs.push(Program::load(p, &insns, spec.license())?);
        }
        Ok(Object { maps, programs })
    }

    /// Pins every map of the object's `.maps` section at `dir/maps/<name>` and every program at
    /// `dir/programs/<name>` (bpffs; directories made with mode 0700), so that another process
    /// can take them over with [`Object::from_pins`]. Data sections (`.rodata`, ...) are not
    /// pinned: the programs keep them alive.
    pub fn pin(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        for map in self.maps.iter_mut().filter(|m| m.is_btf_defined()) {
            let path = dir.join("maps").join(map.name());
            map.pin(&path)?;
        }
        for p in &self.programs {
            p.pin(dir.join("programs").join(p.name()))?;
        }
        Ok(())
    }

    /// Opens an object pinned by [`Object::pin`] under `dir`, with the maps and programs `spec`
    /// names (the spec the pinned object was loaded from). Nothing is loaded: the programs are
    /// the pinned ones, still sharing the pinned maps. An fentry/fexit program with no pin is left
    /// out (the kernel that pinned the object could not load it, see
    /// [`ObjectSpec::remove_program`]); asking for it is then [`Error::UnknownProgram`]. Any other
    /// missing pin is an error.
    pub fn from_pins(spec: &ObjectSpec, dir: impl AsRef<Path>) -> Result<Object> {
        let dir = dir.as_ref();
        let mut maps = Vec::new();
        for m in spec.maps().iter().filter(|m| m.kind == MapKind::Btf) {
            let mut map = Map::from_pin(dir.join("maps").join(&m.name))?;
            map.set_name(&m.name);
            maps.push(map);
        }
        let programs = spec
            .programs()
            .iter()
            .map(|p| (dir.join("programs").join(&p.name), p))
            .filter(|(pin, p)| pin.exists() || !matches!(p.kind, ProgramKind::Tracing { .. }))
            .map(|(pin, p)| Program::from_pin(pin, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Object { maps, programs })
    }

    /// The map named `name`.
    pub fn map(&self, name: &str) -> Result<&Map> {
        self.maps
            .iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::UnknownMap(name.into()))
    }

    /// The map named `name`, mutably (to pin it).
    pub fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        self.maps
            .iter_mut()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::UnknownMap(name.into()))
    }

    /// The program named `name`.
    pub fn program(&self, name: &str) -> Result<&Program> {
        self.programs
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::UnknownProgram(name.into()))
    }

    /// All maps, in the spec's order.
    pub fn maps(&self) -> impl Iterator<Item = &Map> {
        self.maps.iter()
    }

    /// All programs, in the spec's order.
    pub fn programs(&self) -> impl Iterator<Item = &Program> {
        self.programs.iter()
    }
}
