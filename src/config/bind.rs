//! `PrisonBind <host path> [<path inside>] [ro|rw]`: more of the host inside the prison.

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// Why a bind was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BindError {
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("{0:?} has '.' or '..' components; write the plain path")]
    NotNormal(String),
    #[error("host path {0:?} does not exist")]
    Missing(String),
    #[error("binding the host's / would put the whole host inside the prison")]
    HostRoot,
    #[error("cannot bind over the prison's own / or /dev (got {0:?})")]
    Reserved(String),
    #[error("{0:?} is neither ro nor rw, nor an absolute path inside the prison")]
    BadMode(String),
    #[error("too many arguments: PrisonBind <host path> [<path inside>] [ro|rw]")]
    TooMany,
    #[error("{0:?} inside the prison is already the target of another PrisonBind")]
    Duplicate(PathBuf),
}

/// One bind mount of a host path into the prison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute path as seen inside the prison.
    pub inside: PathBuf,
    pub writable: bool,
}

impl Bind {
    /// Parses the directive's one to three words. `exists` tells whether a host path exists
    /// (injected so the parser stays pure).
    pub fn parse(args: &[&str], exists: impl Fn(&Path) -> bool) -> Result<Self, BindError> {
        let (host, rest) = args.split_first().ok_or(BindError::TooMany)?;
        let host = normal_absolute(host)?;
        if host == Path::new("/") {
            return Err(BindError::HostRoot);
        }
        if !exists(&host) {
            return Err(BindError::Missing(host.display().to_string()));
        }
        let (mut inside, mut writable) = (host.clone(), false);
        match rest {
            [] => {}
            [one] if one.starts_with('/') => inside = normal_absolute(one)?,
            [mode] => writable = parse_mode(mode)?,
            [path, mode] => {
                inside = normal_absolute(path)?;
                writable = parse_mode(mode)?;
            }
            _ => return Err(BindError::TooMany),
        }
        if inside == Path::new("/") || inside == Path::new("/dev") {
            return Err(BindError::Reserved(inside.display().to_string()));
        }
        Ok(Self {
            host,
            inside,
            writable,
        })
    }
}

fn parse_mode(word: &str) -> Result<bool, BindError> {
    match word.to_ascii_lowercase().as_str() {
        "ro" => Ok(false),
        "rw" => Ok(true),
        _ => Err(BindError::BadMode(word.to_owned())),
    }
}

fn normal_absolute(text: &str) -> Result<PathBuf, BindError> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(BindError::NotAbsolute(text.to_owned()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(BindError::NotNormal(text.to_owned()));
    }
    Ok(path.components().collect())
}
