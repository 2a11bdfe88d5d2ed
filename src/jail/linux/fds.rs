//! Closing stray directory descriptors before joining the prison: a directory fd opened on the
//! host stays usable after setns/pivot_root (`fchdir`, `openat(fd, "../..")`) and would be a
//! way out.

use std::os::fd::RawFd;

use crate::jail::SetupError;

/// Closes every open directory descriptor except `keep`; returns the ones closed.
pub fn close_directory_fds(keep: &[RawFd]) -> Result<Vec<RawFd>, SetupError> {
    let step = "listing the child's open descriptors in /proc/self/fd";
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| SetupError::new(step, e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory iterator's own fd is closed by now; fstat below skips it (EBADF).
    let mut closed = Vec::new();
    for fd in fds.into_iter().filter(|fd| !keep.contains(fd)) {
        // SAFETY: an all-zero stat is a valid out-buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat only writes `st`; an fd that is not open gives EBADF.
        if unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // SAFETY: closing a directory fd nobody may keep across the prison's border.
            if unsafe { libc::close(fd) } != 0 {
                return Err(SetupError::last_os_error(format!(
                    "closing stray directory descriptor {fd}"
                )));
            }
            closed.push(fd);
        }
    }
    Ok(closed)
}
