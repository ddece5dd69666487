//! What kprobes need from the kernel's pseudo-files: the kprobe PMU (sysfs
//! `/sys/bus/event_source/devices/kprobe`) and whether a function can be probed (`/proc/kallsyms`,
//! tracefs `available_filter_functions`).

use std::io::BufRead;
use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};

const PMU_DIR: &str = "/sys/bus/event_source/devices/kprobe";

/// The kprobe PMU: its perf event type and the config bit that asks for a return probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KprobePmu {
    pub pmu_type: u32,
    pub retprobe_bit: u32,
}

/// The kprobe PMU of this kernel (cached). [`Error::NoKprobes`] when sysfs has none: a kernel
/// without CONFIG_KPROBES or CONFIG_KPROBE_EVENTS (or older than 4.17).
pub(crate) fn kprobe_pmu() -> Result<KprobePmu> {
    static PMU: OnceLock<KprobePmu> = OnceLock::new();
    if let Some(p) = PMU.get() {
        return Ok(*p);
    }
    let dir = Path::new(PMU_DIR);
    let type_path = dir.join("type");
    let pmu_type = match std::fs::read_to_string(&type_path) {
        Ok(t) => t.trim().parse().map_err(|_| {
            Error::InvalidArgument(format!("{}: not a PMU type: {t:?}", type_path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoKprobes(format!("no {}", type_path.display())))
        }
        Err(e) => return Err(Error::io(type_path, e)),
    };
    let format_path = dir.join("format").join("retprobe");
    let format = std::fs::read_to_string(&format_path).map_err(|e| Error::io(&format_path, e))?;
    let retprobe_bit = parse_config_bit(&format).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}: expected `config:<bit>`, found {format:?}",
            format_path.display()
        ))
    })?;
    Ok(*PMU.get_or_init(|| KprobePmu {
        pmu_type,
        retprobe_bit,
    }))
}

/// The bit of a one-bit PMU format such as `config:0\n`.
fn parse_config_bit(format: &str) -> Option<u32> {
    let bit: u32 = format.trim().strip_prefix("config:")?.parse().ok()?;
    (bit < 64).then_some(bit)
}

/// Is `line` (of /proc/kallsyms: `address type name [module]`) the symbol `name` of the kernel
/// proper or a module, as a function (text symbol, `t` or `T`)?
fn kallsyms_names(line: &str, name: &str) -> bool {
    let mut fields = line.split_whitespace();
    let (_, Some(kind), Some(sym)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    matches!(kind, "t" | "T") && sym == name
}

/// Does the running kernel have a function `name` that kprobes can be placed on? Looks in
/// /proc/kallsyms (a function inlined into all its callers has no symbol), then in tracefs
/// `available_filter_functions`. `Ok(false)` when neither lists it.
pub fn kernel_function_exists(name: &str) -> Result<bool> {
    const KALLSYMS: &str = "/proc/kallsyms";
    match std::fs::File::open(KALLSYMS) {
        Ok(f) => {
            for line in std::io::BufReader::with_capacity(1 << 16, f).lines() {
                let line = line.map_err(|e| Error::io(KALLSYMS, e))?;
                if kallsyms_names(&line, name) {
                    return Ok(true);
                }
            }
        }
        Err(e) => log::debug!("{KALLSYMS}: {e}"),
    }
    let Ok(tracefs) = crate::kernel_files::tracefs_dir() else {
        return Ok(false);
    };
    let path = tracefs.join("available_filter_functions");
    match std::fs::File::open(&path) {
        Ok(f) => {
            for line in std::io::BufReader::with_capacity(1 << 16, f).lines() {
                let line = line.map_err(|e| Error::io(&path, e))?;
                if line.split_whitespace().next() == Some(name) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) => {
            log::debug!("{}: {e}", path.display());
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retprobe_format() {
        assert_eq!(parse_config_bit("config:0\n"), Some(0));
        assert_eq!(parse_config_bit("config:9"), Some(9));
        for bad in ["", "config:", "config1:0", "config:64", "config:0-1"] {
            assert_eq!(parse_config_bit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kallsyms_lines() {
        assert!(kallsyms_names(
            "ffffffff816b7430 t do_sys_openat2",
            "do_sys_openat2"
        ));
        assert!(kallsyms_names(
            "0000000000000000 T do_sys_openat2",
            "do_sys_openat2"
        ));
        assert!(kallsyms_names(
            "ffffffffc0a01000 t helper\t[some_module]",
            "helper"
        ));
        assert!(!kallsyms_names(
            "ffffffff816b7700 T do_sys_open",
            "do_sys_openat2"
        ));
        assert!(!kallsyms_names(
            "ffffffff82000000 d do_sys_openat2",
            "do_sys_openat2"
        ));
        assert!(!kallsyms_names("", "x"));
    }
}
