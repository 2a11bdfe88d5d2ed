//! Read-only facts about the host that configuration checks need.

use std::io;

use crate::config::CpuSet;

/// The CPUs this machine has online.
#[cfg(target_os = "linux")]
pub fn online_cpus() -> io::Result<CpuSet> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path)?;
    CpuSet::parse(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// The CPUs this machine has: 0 to the configured count minus one.
#[cfg(not(target_os = "linux"))]
pub fn online_cpus() -> io::Result<CpuSet> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let count = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    if count < 1 {
        return Err(io::Error::last_os_error());
    }
    let last = u32::try_from(count - 1).unwrap_or(crate::config::MAX_CPU_ID);
    Ok((0..=last).collect())
}
