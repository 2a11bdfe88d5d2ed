//! `PrisonCPU`: the CPU list the prison may run on.

use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

/// Highest CPU id accepted by the parser, before the host check (Linux `CPU_SETSIZE`).
pub const MAX_CPU_ID: u32 = 1023;

/// Why a CPU list was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpuListError {
    #[error("empty CPU list; write e.g. 1, 1,2,6, 8-10 or 0,2-3")]
    Empty,
    #[error("empty item in CPU list {0:?} (stray comma?)")]
    EmptyItem(String),
    #[error("{0:?} is not a CPU number")]
    NotANumber(String),
    #[error("reversed range {0}-{1}; write {1}-{0}")]
    Reversed(u32, u32),
    #[error("CPU {0} is above the largest supported id {MAX_CPU_ID}")]
    TooLarge(String),
    #[error("CPU {cpu} does not exist on this machine (it has CPUs {online})")]
    NotOnline { cpu: u32, online: CpuSet },
}

/// A set of CPU ids, shown in the kernel's list form (`0,2-3`), which is also what
/// `cpuset.cpus` takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// Parses `1`, `1,2,6`, `8-10` (inclusive), or a mix such as `0,2-3`.
    pub fn parse(list: &str) -> Result<Self, CpuListError> {
        let list = list.trim();
        if list.is_empty() {
            return Err(CpuListError::Empty);
        }
        let mut cpus = BTreeSet::new();
        for item in list.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(CpuListError::EmptyItem(list.to_owned()));
            }
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (cpu_id(a)?, cpu_id(b)?),
                None => {
                    let cpu = cpu_id(item)?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return Err(CpuListError::Reversed(first, last));
            }
            cpus.extend(first..=last);
        }
        Ok(Self(cpus))
    }

    /// Refuses CPUs that `online` (this machine's CPUs) does not contain.
    pub fn check_within(&self, online: &CpuSet) -> Result<(), CpuListError> {
        match self.0.iter().find(|cpu| !online.0.contains(cpu)) {
            Some(&cpu) => Err(CpuListError::NotOnline {
                cpu,
                online: online.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

fn cpu_id(text: &str) -> Result<u32, CpuListError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CpuListError::NotANumber(text.to_owned()));
    }
    // Out of u32 range is also too large; the error repeats the text as written.
    match text.parse::<u32>() {
        Ok(cpu) if cpu <= MAX_CPU_ID => Ok(cpu),
        _ => Err(CpuListError::TooLarge(text.to_owned())),
    }
}

impl fmt::Display for CpuSet {
    /// Canonical kernel list form: ranges of three or more collapse (`8-10`), pairs stay (`1,2`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus: Vec<u32> = self.iter().collect();
        let mut i = 0;
        let mut first = true;
        while i < cpus.len() {
            let mut j = i;
            while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match j - i {
                0 => write!(f, "{}", cpus[i])?,
                1 => write!(f, "{},{}", cpus[i], cpus[j])?,
                _ => write!(f, "{}-{}", cpus[i], cpus[j])?,
            }
            i = j + 1;
        }
        Ok(())
    }
}
