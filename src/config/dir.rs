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
    #[error("{ancestor:?}, above {dir:?}, cannot be used: {source}")]
    AncestorUnusable {
        ancestor: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("{ancestor:?}, above {dir:?}, must be owned by root (it is owned by uid {uid}) in PARANOID builds: its owner could replace the prison")]
    AncestorNotRootOwned {
        ancestor: PathBuf,
        dir: PathBuf,
        uid: u32,
    },
    #[error("{ancestor:?}, above {dir:?}, must not be group or world writable (mode {mode:04o}) in PARANOID builds: whoever can write to it could replace the prison")]
    AncestorWritable {
        ancestor: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
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
    check_facts(&real, facts_of(&real).map_err(unusable)?, paranoid)?;
    if paranoid {
        for ancestor in real.ancestors().skip(1) {
            let facts = facts_of(ancestor).map_err(|source| DirError::AncestorUnusable {
                ancestor: ancestor.to_owned(),
                dir: real.clone(),
                source,
            })?;
            check_ancestor_facts(ancestor, &real, facts)?;
        }
    }
    Ok(real)
}

fn facts_of(path: &Path) -> io::Result<DirFacts> {
    let meta = fs::metadata(path)?;
    Ok(DirFacts {
        is_dir: meta.is_dir(),
        uid: meta.uid(),
        mode: meta.mode(),
    })
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

/// PARANOID's check of each directory above PrisonDir `dir`, as sshd checks ChrootDirectory's:
/// whoever can write to an ancestor can rename the prison away and put their own tree there.
/// One exception to sshd: a root-owned sticky directory (`/tmp`), where only an entry's owner
/// may rename or remove it, so a root-owned prison below cannot be replaced.
pub fn check_ancestor_facts(ancestor: &Path, dir: &Path, facts: DirFacts) -> Result<(), DirError> {
    const STICKY: u32 = 0o1000;
    if facts.uid != 0 {
        return Err(DirError::AncestorNotRootOwned {
            ancestor: ancestor.to_owned(),
            dir: dir.to_owned(),
            uid: facts.uid,
        });
    }
    if facts.mode & 0o022 != 0 && facts.mode & STICKY == 0 {
        return Err(DirError::AncestorWritable {
            ancestor: ancestor.to_owned(),
            dir: dir.to_owned(),
            mode: facts.mode & 0o7777,
        });
    }
    Ok(())
}
