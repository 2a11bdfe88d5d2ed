//! The writes: small helpers over the cgroup filesystem, each error naming the step and path.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::jail::SetupError;

/// Writes `value` to the control file `path` in one `write` (cgroupfs takes a value per write).
pub fn write(path: &Path, value: &str) -> Result<(), SetupError> {
    fs::OpenOptions::new()
        .write(true)
        // Never created: a real control file exists or the controller is missing (ENOENT).
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()))
        .map_err(|e| SetupError::new(format!("writing {value:?} to {}", path.display()), e))
}

pub fn read(path: &Path) -> Result<String, SetupError> {
    fs::read_to_string(path).map_err(|e| SetupError::new(format!("reading {}", path.display()), e))
}

/// `key value` lines (memory.events, pids.events, memory.oom_control): the value of `key`.
pub fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A number file (memory.usage_in_bytes, memory.current, memory.peak).
pub fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether systemd (or the admin) delegated `dir`: `trusted.delegate` or `user.delegate` is "1".
pub fn delegated(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.delegate", c"user.delegate"].iter().any(|name| {
        let mut value = [0u8; 8];
        // SAFETY: both strings are NUL-terminated; the kernel writes at most value.len() bytes.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        n > 0 && &value[..n as usize] == b"1"
    })
}

/// v1 memory threshold: an eventfd that the kernel signals each time `usage_in_bytes` crosses
/// `bytes`, in either direction. Returns (eventfd, the usage file it watches): both must stay
/// open for the event to stay registered.
pub fn memory_threshold(dir: &Path, bytes: u64) -> Result<(OwnedFd, OwnedFd), SetupError> {
    // SAFETY: eventfd takes only flags and returns a new fd or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(SetupError::last_os_error(
            "creating an eventfd for the memory report",
        ));
    }
    // SAFETY: `efd` is a new descriptor that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    let usage_path = dir.join("memory.usage_in_bytes");
    let usage = fs::File::open(&usage_path)
        .map_err(|e| SetupError::new(format!("opening {}", usage_path.display()), e))?;
    write(
        &dir.join("cgroup.event_control"),
        &format!("{} {} {bytes}", efd.as_raw_fd(), usage.as_raw_fd()),
    )?;
    Ok((efd, usage.into()))
}

/// Reads and resets an eventfd counter; 0 when it has not fired.
pub fn drain_eventfd(efd: &OwnedFd) -> u64 {
    let mut count = [0u8; 8];
    // SAFETY: reading 8 bytes into an 8-byte buffer from our own non-blocking eventfd.
    let n = unsafe { libc::read(efd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    if n == 8 {
        u64::from_ne_bytes(count)
    } else {
        0
    }
}

/// The two operations in which a cgroup filesystem differs from a plain one: mkdir makes the
/// new cgroup's control files, and rmdir removes them with it (EBUSY while it has tasks).
pub trait Tree: std::fmt::Debug + Send + Sync {
    fn mkdir(&self, dir: &Path) -> io::Result<()>;
    fn rmdir(&self, dir: &Path) -> io::Result<()>;
}

/// The kernel's cgroupfs.
#[derive(Debug)]
pub struct Kernel;

impl Tree for Kernel {
    fn mkdir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir(dir)
    }

    fn rmdir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }
}

/// rmdir; Ok(false) while the cgroup still has tasks or children (EBUSY), Ok(true) when gone.
pub fn remove(tree: &dyn Tree, dir: &Path) -> io::Result<bool> {
    match tree.rmdir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pids in a cgroup (its `cgroup.procs`).
pub fn tasks(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        // Never 0 or negative: kill() would take those as process groups.
        .filter(|&pid| pid > 0)
        .collect()
}
