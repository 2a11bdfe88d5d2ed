//! `PrisonSecurity None|ALL|IPC`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not a level; PrisonSecurity takes None, ALL or IPC")]
pub struct SecurityError(pub String);

/// How much the prison forbids beyond its root, network and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Namespaces and PrisonDir only.
    None,
    /// The original's list: no SysV IPC, raw devices, module loading, mounts, raw sockets,
    /// firewall changes, chflags; sockets only unix/inet/inet6.
    All,
    /// As ALL, but SysV IPC allowed (inside the prison's own IPC namespace).
    Ipc,
}

impl Security {
    /// PARANOID builds default to ALL, as the original did.
    pub const DEFAULT: Security = if cfg!(feature = "paranoid") {
        Security::All
    } else {
        Security::None
    };
}

impl FromStr for Security {
    type Err = SecurityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "all" => Ok(Self::All),
            "ipc" => Ok(Self::Ipc),
            _ => Err(SecurityError(text.to_owned())),
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::All => "ALL",
            Self::Ipc => "IPC",
        })
    }
}
