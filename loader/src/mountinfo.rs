//! Parsing `/proc/<pid>/mountinfo` (proc(5)): the one parser of it in podnet, used by the loader
//! to find tracefs and bpffs and by the cli to find the cgroup file systems.
//!
//! A line reads
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! mount id, parent id, major:minor, root, mount point, mount options, optional fields ending at
//! the ` - ` separator, then file system type, source and super options. Paths have their octal
//! escapes (`\040` for a space) decoded.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// One mount: a line of a mountinfo file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount.
    pub mount_id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// The directory of the file system that forms the root of this mount (for a cgroup file
    /// system, relative to this process's cgroup namespace: `/../..` lies above it).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub mount_options: String,
    /// File system type (`cgroup2`, `tracefs`, `bpf`, ...).
    pub fs_type: String,
    /// Source (`/dev/sda1`, `none`, `cgroup2`, ...).
    pub source: String,
    /// Per-superblock options (`rw,nsdelegate`, or the v1 controllers: `rw,memory`); empty when
    /// the line has none.
    pub super_options: String,
}

impl MountInfo {
    /// Parses one line; `None` when it lacks a field up to the source.
    pub fn parse_line(line: &str) -> Option<MountInfo> {
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split(' ');
        let mount_id = l.next()?.parse().ok()?;
        let parent_id = l.next()?.parse().ok()?;
        let _major_minor = l.next()?;
        let root = l.next()?;
        let mount_point = l.next()?;
        let mount_options = l.next().unwrap_or("");
        let mut r = right.split(' ');
        let fs_type = r.next()?;
        let source = r.next()?;
        let super_options = r.next().unwrap_or("");
        Some(MountInfo {
            mount_id,
            parent_id,
            root: unescape(root),
            mount_point: PathBuf::from(unescape(mount_point)),
            mount_options: mount_options.into(),
            fs_type: fs_type.into(),
            source: unescape(source),
            super_options: super_options.into(),
        })
    }

    /// Is option `name` among the super options (exactly: `memory` is not `memory_recursiveprot`)?
    pub fn has_super_option(&self, name: &str) -> bool {
        self.super_options.split(',').any(|o| o == name)
    }
}

/// Every mount of a mountinfo text, in order; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(MountInfo::parse_line).collect()
}

/// The mounts of this process (`/proc/self/mountinfo`).
pub fn read_self() -> Result<Vec<MountInfo>> {
    const PATH: &str = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(PATH).map_err(|e| Error::io(PATH, e))?;
    Ok(parse(&text))
}

/// Mount points of every file system of type `fs_type` in a mountinfo text, in order.
pub fn mount_points(text: &str, fs_type: &str) -> Vec<PathBuf> {
    parse(text)
        .into_iter()
        .filter(|m| m.fs_type == fs_type)
        .map(|m| m.mount_point)
        .collect()
}

/// Decodes the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash) the
/// kernel writes in mountinfo paths. A backslash not followed by three octal digits of a byte
/// value is kept as it is.
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)))
        .then(|| {
            b[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, c| n * 8 + u32::from(c - b'0'))
        })
        .and_then(|n| u8::try_from(n).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lookup() {
        let text = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw,nsdelegate
41 22 0:12 / /sys/kernel/tracing rw,nosuid shared:18 - tracefs tracefs rw
42 22 0:35 / /sys/fs/bpf rw - bpf bpf rw,mode=700
43 22 0:36 / /tmp/with\\040space rw master:1 - bpf none rw
";
        assert_eq!(
            mount_points(text, "tracefs"),
            vec![PathBuf::from("/sys/kernel/tracing")]
        );
        assert_eq!(
            mount_points(text, "bpf"),
            vec![
                PathBuf::from("/sys/fs/bpf"),
                PathBuf::from("/tmp/with space")
            ]
        );
        assert!(mount_points(text, "debugfs").is_empty());
        assert!(mount_points("garbage\n\n - \n", "bpf").is_empty());
    }

    #[test]
    fn every_field_of_a_line() {
        let line = "36 35 98:0 /mnt\\0401 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/ro\\040ot rw,errors=continue";
        assert_eq!(
            MountInfo::parse_line(line),
            Some(MountInfo {
                mount_id: 36,
                parent_id: 35,
                root: "/mnt 1".into(),
                mount_point: PathBuf::from("/mnt2"),
                mount_options: "rw,noatime".into(),
                fs_type: "ext3".into(),
                source: "/dev/ro ot".into(),
                super_options: "rw,errors=continue".into(),
            })
        );
        let no_super_options = MountInfo::parse_line("1 0 0:1 / / rw - rootfs rootfs").unwrap();
        assert_eq!(no_super_options.super_options, "");
        assert!(!no_super_options.has_super_option("rw"));
        let m = MountInfo::parse_line("1 1 0:1 / /x rw - cgroup cgroup rw,memory_recursiveprot")
            .unwrap();
        assert!(m.has_super_option("rw"));
        assert!(!m.has_super_option("memory"));
        for bad in [
            "",
            "garbage",
            " - ",
            "1 2 0:1 / /x rw",
            "1 2 0:1 / - cgroup2 cgroup2 rw",
            "1 2 0:1 / /x rw - cgroup2",
            "x 2 0:1 / /x rw - cgroup2 cgroup2 rw",
        ] {
            assert_eq!(MountInfo::parse_line(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse("garbage\n1 0 0:1 / / rw - rootfs rootfs rw\n").len(),
            1
        );
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape("/mnt/my\\040cgroup\\134x"), "/mnt/my cgroup\\x");
        assert_eq!(unescape("a\\011b\\012c"), "a\tb\nc");
        // Not an escape: too few digits, not octal, or above a byte; kept as written.
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\089"), "a\\089");
        assert_eq!(unescape("a\\777b"), "a\\777b");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn this_process_has_mounts() {
        // Reading /proc/self/mountinfo needs /proc mounted: at least that mount parses.
        let mounts = read_self().unwrap();
        assert!(mounts.iter().any(|m| m.fs_type == "proc"), "{mounts:?}");
    }
}
