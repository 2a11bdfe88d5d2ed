//! One prison per PrisonName on a host: the parent holds an abstract unix socket named after
//! the prison. The kernel frees the name when the last holder dies, so a crashed httpd (kill
//! -9) never blocks the next start, and no lock file is left behind.
//!
//! Abstract socket names belong to a network namespace; the parent stays in the host's, so two
//! httpds on one host conflict exactly when they would share cgroup names and log lines.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::super::SetupError;

/// The claim on a PrisonName; dropping it releases the name.
#[derive(Debug)]
pub struct NameClaim(OwnedFd);

/// The abstract address: a NUL, then `mod_prison/<name>` (not NUL-terminated).
fn address(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_un is valid (empty path).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = format!("mod_prison/{name}");
    // Names are at most 64 characters (config::MAX_NAME_LEN): this fits the 108-byte path.
    for (slot, byte) in addr.sun_path[1..].iter_mut().zip(path.bytes()) {
        *slot = byte as libc::c_char;
    }
    let used = 1 + path.len().min(addr.sun_path.len() - 1);
    let len = std::mem::size_of::<libc::sa_family_t>() + used;
    (addr, len as libc::socklen_t)
}

impl NameClaim {
    /// Claims `name` for this httpd, or says which name is taken.
    pub fn claim(name: &str) -> Result<Self, SetupError> {
        let step = || format!("claiming PrisonName {name}");
        // SAFETY: plain socket(2); CLOEXEC so that nothing httpd execs inherits the claim.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(SetupError::last_os_error(step()));
        }
        // SAFETY: `fd` is a new socket that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (addr, len) = address(name);
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        let ret = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        if ret != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EADDRINUSE) {
                return Err(SetupError::check(
                    step(),
                    format!(
                        "another running httpd already uses PrisonName {name}; \
                         give each httpd on this host its own PrisonName"
                    ),
                ));
            }
            return Err(SetupError::new(step(), err));
        }
        Ok(Self(fd))
    }

    /// The descriptor, which every child closes: only the parent holds the claim, so that
    /// a graceful restart can claim the name again while old children finish.
    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_claimed_once_and_freed_on_drop() {
        let name = format!("unit-{}", std::process::id());
        let first = NameClaim::claim(&name).expect("first claim");
        let err = NameClaim::claim(&name).expect_err("second claim");
        assert!(err.to_string().contains("already uses PrisonName"), "{err}");
        drop(first);
        NameClaim::claim(&name).expect("claim after release");
    }

    #[test]
    fn the_longest_name_fits() {
        let name = "n".repeat(crate::config::MAX_NAME_LEN);
        let (addr, len) = address(&name);
        assert_eq!(addr.sun_path[0], 0);
        assert_eq!(len as usize, 2 + 1 + "mod_prison/".len() + name.len());
    }
}
