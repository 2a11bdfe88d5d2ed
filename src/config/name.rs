//! `PrisonName`: names the prison's jail, cgroups and log lines on every platform.

use std::fmt;

use thiserror::Error;

/// Longest accepted name: Linux uses it as the prison's hostname (`HOST_NAME_MAX`).
pub const MAX_NAME_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("{0:?} has characters other than letters, digits, '_' and '-'")]
    BadCharacter(String),
    #[error("{0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("{0:?} is all digits, which FreeBSD would read as a jail id")]
    Numeric(String),
    #[error("{0:?} starts with '-', which tools would read as an option")]
    LeadingDash(String),
}

/// A validated prison name: `[A-Za-z0-9_-]`, 1 to 64 characters, not all digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrisonName(String);

impl PrisonName {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(NameError::BadCharacter(text.to_owned()));
        }
        if text.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(text.to_owned()));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::Numeric(text.to_owned()));
        }
        if text.starts_with('-') {
            return Err(NameError::LeadingDash(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The original's default: the ServerName with every other character turned into `_`
    /// (`plop.rmdir.fr` -> `plop_rmdir_fr`).
    pub fn from_server_name(server_name: &str) -> Result<Self, NameError> {
        let mapped: String = server_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self::parse(&mapped)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PrisonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
