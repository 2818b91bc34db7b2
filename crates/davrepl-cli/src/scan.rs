//! The local side: walking the folder, stat and hash.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::journal::Stat;

/// The folder the journal lives in, skipped by the walk.
pub const STATE_DIR: &str = ".davrepl";

/// A file or folder found in the local tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// A folder.
    pub is_dir: bool,
    /// Its stat (files).
    pub stat: Stat,
}

/// The stat of a metadata record.
pub fn stat_of(m: &std::fs::Metadata) -> Stat {
    Stat {
        size: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ino: m.ino(),
    }
}

/// Whether a name can travel both ways: not a control character, not `.`/`..`.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.chars().any(|c| c.is_control())
}

/// Walks `root`; returns what it found by `/`-separated relative path, and a warning for
/// everything skipped (symlinks, special files, names that are not UTF-8).
pub fn walk(root: &Path) -> std::io::Result<(HashMap<String, Local>, Vec<String>)> {
    let mut found = HashMap::new();
    let mut warnings = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if rel.is_empty() => return Err(e),
            Err(e) => {
                warnings.push(format!("skipped {rel}/: {e}"));
                continue;
            }
        };
        for entry in entries {
            let entry = entry?;
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                warnings.push(format!(
                    "skipped {}: the name is not UTF-8",
                    entry.path().display()
                ));
                continue;
            };
            if rel.is_empty() && name == STATE_DIR {
                continue;
            }
            let path = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            if !name_ok(name) {
                warnings.push(format!("skipped {path}: the name cannot be synced"));
                continue;
            }
            // Relative to the open directory (`fstatat`): no path walk from the root per file.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    warnings.push(format!("skipped {path}: {e}"));
                    continue;
                }
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push((entry.path(), path.clone()));
                found.insert(
                    path,
                    Local {
                        is_dir: true,
                        stat: Stat::default(),
                    },
                );
            } else if ft.is_file() {
                found.insert(
                    path,
                    Local {
                        is_dir: false,
                        stat: stat_of(&meta),
                    },
                );
            } else if ft.is_symlink() {
                warnings.push(format!("skipped {path}: symbolic link"));
            } else {
                warnings.push(format!("skipped {path}: not a regular file"));
            }
        }
    }
    Ok((found, warnings))
}

/// SHA-256 of a file, lowercase hex, and the stat it had when read.
pub fn hash_file(path: &Path) -> std::io::Result<(String, Stat)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let stat = stat_of(&f.metadata()?);
    Ok((hex(&h.finalize()), stat))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
