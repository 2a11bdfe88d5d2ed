//! `PrisonMemory report deny`: the prison-wide memory thresholds.

use thiserror::Error;

/// Why a size or the pair of sizes was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemoryError {
    #[error("{0:?} is not a size; write bytes, or a number with k, M, G or T (e.g. 512M); 0 means no limit")]
    NotASize(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
    #[error("report threshold {report} is above the deny limit {deny}; report must be at most deny (or deny 0 for no limit)")]
    ReportAboveDeny { report: u64, deny: u64 },
}

/// Prison-wide memory thresholds in bytes; `None` means no threshold (the directive's `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryLimits {
    /// Log (FreeBSD: devctl) when the prison's total use crosses this.
    pub report: Option<u64>,
    /// The prison's total may not exceed this.
    pub deny: Option<u64>,
}

impl MemoryLimits {
    pub fn parse(report: &str, deny: &str) -> Result<Self, MemoryError> {
        let report = parse_size(report)?;
        let deny = parse_size(deny)?;
        if deny != 0 && report > deny {
            return Err(MemoryError::ReportAboveDeny { report, deny });
        }
        let nonzero = |n: u64| (n != 0).then_some(n);
        Ok(Self {
            report: nonzero(report),
            deny: nonzero(deny),
        })
    }
}

/// Parses plain bytes or a number with a binary suffix: `k`/`K` (KiB), `M`, `G`, `T`
/// (either case).
pub fn parse_size(text: &str) -> Result<u64, MemoryError> {
    let not_a_size = || MemoryError::NotASize(text.to_owned());
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        Some(b't' | b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_size());
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| MemoryError::TooLarge(text.to_owned()))?;
    number
        .checked_mul(1u64 << shift)
        .filter(|bytes| *bytes <= i64::MAX as u64)
        .ok_or_else(|| MemoryError::TooLarge(text.to_owned()))
}
