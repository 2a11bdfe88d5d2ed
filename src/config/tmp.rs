//! `PrisonTmp <size>|off`: the prison's private `/tmp`, a tmpfs of at most this size.

use thiserror::Error;

use super::memory::parse_size;

/// The smallest size accepted: one page (tmpfs rounds up to whole pages anyway).
pub const MIN_TMP_SIZE: u64 = 4096;

/// The size of the private `/tmp` when PrisonTmp is not written (Linux).
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;

/// Why the argument was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TmpError {
    #[error(
        "{0:?} is neither off nor a size; write bytes or a number with k, M, G or T (e.g. 64M)"
    )]
    NotASize(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
    #[error("{0:?} is below one page ({MIN_TMP_SIZE} bytes); write off for no private /tmp")]
    TooSmall(String),
}

/// What the admin asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tmp {
    /// Not written: the platform's default (Linux: a tmpfs of [`DEFAULT_TMP_SIZE`]; FreeBSD:
    /// none).
    #[default]
    Default,
    /// `off`: no private `/tmp` (PrisonDir's own `tmp`, if any, is what the children see).
    Off,
    /// A tmpfs of at most this many bytes.
    Size(u64),
}

impl Tmp {
    pub fn parse(text: &str) -> Result<Self, TmpError> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Tmp::Off);
        }
        let bytes = parse_size(text).map_err(|e| match e {
            super::MemoryError::TooLarge(_) => TmpError::TooLarge(text.to_owned()),
            _ => TmpError::NotASize(text.to_owned()),
        })?;
        if bytes < MIN_TMP_SIZE {
            return Err(TmpError::TooSmall(text.to_owned()));
        }
        Ok(Tmp::Size(bytes))
    }

    /// The size on Linux, where the default is a tmpfs; `None`: no private `/tmp`.
    pub fn linux_size(self) -> Option<u64> {
        match self {
            Tmp::Default => Some(DEFAULT_TMP_SIZE),
            Tmp::Off => None,
            Tmp::Size(bytes) => Some(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_off_and_refusals() {
        assert_eq!(Tmp::parse("64M"), Ok(Tmp::Size(64 << 20)));
        assert_eq!(Tmp::parse("4096"), Ok(Tmp::Size(4096)));
        assert_eq!(Tmp::parse("OFF"), Ok(Tmp::Off));
        assert_eq!(Tmp::parse("0"), Err(TmpError::TooSmall("0".into())));
        assert_eq!(Tmp::parse("4095"), Err(TmpError::TooSmall("4095".into())));
        assert_eq!(Tmp::parse("lots"), Err(TmpError::NotASize("lots".into())));
        assert_eq!(
            Tmp::parse("99999999T"),
            Err(TmpError::TooLarge("99999999T".into()))
        );
        assert_eq!(Tmp::Default.linux_size(), Some(DEFAULT_TMP_SIZE));
        assert_eq!(Tmp::Off.linux_size(), None);
    }
}
