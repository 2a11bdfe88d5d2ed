//! `PrisonProcesses <n>`: the most tasks (processes and threads) the prison may hold at once.

use thiserror::Error;

/// Why the count was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProcessesError {
    #[error("{0:?} is not a count; write a whole number of processes and threads (e.g. 512), or 0 for no limit")]
    NotACount(String),
    #[error("{0} is too large; the kernel counts at most {max}", max = MAX_PROCESSES)]
    TooLarge(u64),
}

/// The largest count accepted: Linux's `pid_max` ceiling (4194304, `PID_MAX_LIMIT`).
pub const MAX_PROCESSES: u64 = 1 << 22;

/// Parses the directive's argument. `Ok(None)` is `0`, no limit.
pub fn parse_processes(text: &str) -> Result<Option<u64>, ProcessesError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProcessesError::NotACount(text.to_owned()));
    }
    let n: u64 = text
        .parse()
        .map_err(|_| ProcessesError::NotACount(text.to_owned()))?;
    if n > MAX_PROCESSES {
        return Err(ProcessesError::TooLarge(n));
    }
    Ok((n != 0).then_some(n))
}
