//! `PrisonDir`: the directory that becomes the prison's `/`.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a prison directory was refused.
#[derive(Debug, Error)]
pub enum DirError {
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(PathBuf),
    #[error("{0:?} is the host's root; a prison needs a directory of its own")]
    HostRoot(PathBuf),
    #[error("{path:?} cannot be used: {source}")]
    Unusable { path: PathBuf, source: io::Error },
    #[error("{0:?} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path:?} must be owned by root (it is owned by uid {uid}) in PARANOID builds")]
    NotRootOwned { path: PathBuf, uid: u32 },
    #[error("{path:?} must not be group or world writable (mode {mode:04o}) in PARANOID builds")]
    Writable { path: PathBuf, mode: u32 },
}

/// What the checks need to know about the directory, so they are testable without a
/// real root-owned tree.
#[derive(Debug, Clone, Copy)]
pub struct DirFacts {
    pub is_dir: bool,
    pub uid: u32,
    pub mode: u32,
}

/// Resolves `text` (symlinks included, so the prison is what the admin sees now) and checks it.
pub fn check_prison_dir(text: &str, paranoid: bool) -> Result<PathBuf, DirError> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(DirError::NotAbsolute(path.to_owned()));
    }
    let unusable = |source| DirError::Unusable {
        path: path.to_owned(),
        source,
    };
    let real = fs::canonicalize(path).map_err(unusable)?;
    let meta = fs::metadata(&real).map_err(unusable)?;
    let facts = DirFacts {
        is_dir: meta.is_dir(),
        uid: meta.uid(),
        mode: meta.mode(),
    };
    check_facts(&real, facts, paranoid)?;
    Ok(real)
}

/// The pure part of [`check_prison_dir`].
pub fn check_facts(path: &Path, facts: DirFacts, paranoid: bool) -> Result<(), DirError> {
    if path == Path::new("/") {
        return Err(DirError::HostRoot(path.to_owned()));
    }
    if !facts.is_dir {
        return Err(DirError::NotADirectory(path.to_owned()));
    }
    if paranoid && facts.uid != 0 {
        return Err(DirError::NotRootOwned {
            path: path.to_owned(),
            uid: facts.uid,
        });
    }
    if paranoid && facts.mode & 0o022 != 0 {
        return Err(DirError::Writable {
            path: path.to_owned(),
            mode: facts.mode & 0o7777,
        });
    }
    Ok(())
}
