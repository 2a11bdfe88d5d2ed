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

    /// Restart: keeps the descriptor open past this generation (the process pool's carry
    /// names it). Re-claiming would race with a child forked just before the restart, which
    /// holds a copy until its attach closes it.
    pub fn hand_over(self) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.0)
    }

    /// The next generation, while it builds its own prison: a duplicate of the claim `fd` a
    /// predecessor handed over if it still is this process's claim on `name`, else a new
    /// claim. The carried descriptor stays open: if the build fails, the next generation runs
    /// in the carried prison and takes it over; if it succeeds, it is closed.
    pub fn share(fd: RawFd, name: &str) -> Result<Self, SetupError> {
        if !bound_to(fd, name) {
            return Self::claim(name);
        }
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor (checked above) returns a new one.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if copy < 0 {
            return Err(SetupError::last_os_error(format!(
                "duplicating the claim on PrisonName {name}"
            )));
        }
        // SAFETY: `copy` is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(copy) }))
    }

    /// The next generation: takes back the descriptor `fd` a predecessor handed over if it
    /// still is this process's claim on `name`, else claims `name` anew. A carried claim on
    /// another name is released. A descriptor that is not a claim is left alone: its number
    /// may have been reused.
    pub fn take_over(fd: RawFd, carried: &str, name: &str) -> Result<Self, SetupError> {
        if bound_to(fd, carried) {
            // SAFETY: `fd` is open and is the claim socket a predecessor of this process handed
            // over (checked above); from here this generation owns it.
            let claim = Self(unsafe { OwnedFd::from_raw_fd(fd) });
            if carried == name {
                return Ok(claim);
            }
        }
        Self::claim(name)
    }
}

/// A handed-over claim nobody takes over (the next generation has no prison): released.
pub fn release_carried(fd: RawFd, name: &str) {
    if bound_to(fd, name) {
        // SAFETY: `fd` is this process's claim socket on `name` (checked above), unowned since
        // `hand_over`.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// Whether `fd` is a unix socket bound to the claim address of `name`.
fn bound_to(fd: RawFd, name: &str) -> bool {
    let (want, want_len) = address(name);
    // SAFETY: an all-zero sockaddr_un is valid (empty path).
    let mut got: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `got`; a bad fd gives an error.
    let ret = unsafe { libc::getsockname(fd, (&raw mut got).cast(), &mut len) };
    ret == 0
        && len == want_len
        && got.sun_family == want.sun_family
        && got.sun_path[..] == want.sun_path[..]
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
    fn a_handed_over_claim_is_taken_over_and_never_released_in_between() {
        let name = format!("unit-hand-{}", std::process::id());
        let fd = NameClaim::claim(&name).expect("first claim").hand_over();
        // Handed over, the name stays taken.
        assert!(NameClaim::claim(&name).is_err());
        let claim = NameClaim::take_over(fd, &name, &name).expect("take over");
        assert_eq!(claim.raw_fd(), fd);
        drop(claim);
        NameClaim::claim(&name).expect("claim after release");
    }

    #[test]
    fn a_shared_claim_keeps_the_carried_one_open() {
        let name = format!("unit-share-{}", std::process::id());
        let fd = NameClaim::claim(&name).expect("first claim").hand_over();
        let shared = NameClaim::share(fd, &name).expect("share");
        assert_ne!(shared.raw_fd(), fd);
        drop(shared);
        // The carried descriptor still holds the name.
        assert!(NameClaim::claim(&name).is_err());
        release_carried(fd, &name);
        NameClaim::claim(&name).expect("claim after release");
    }

    #[test]
    fn a_carried_claim_on_another_name_is_released_and_the_new_name_claimed() {
        let (old, new) = (
            format!("unit-old-{}", std::process::id()),
            format!("unit-new-{}", std::process::id()),
        );
        let fd = NameClaim::claim(&old).expect("old").hand_over();
        let claim = NameClaim::take_over(fd, &old, &new).expect("new name");
        NameClaim::claim(&old).expect("the old name is free again");
        assert!(NameClaim::claim(&new).is_err(), "the new name is held");
        drop(claim);
    }

    #[test]
    fn a_descriptor_that_is_no_claim_is_left_alone() {
        let name = format!("unit-alone-{}", std::process::id());
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        let claim = NameClaim::take_over(file.as_raw_fd(), &name, &name).expect("fresh claim");
        assert_ne!(claim.raw_fd(), file.as_raw_fd());
        // Still open: a read of /dev/null gives 0 bytes, not EBADF.
        assert_eq!(
            std::io::Read::read(&mut &file, &mut [0u8; 1]).expect("read"),
            0
        );
    }

    #[test]
    fn the_longest_name_fits() {
        let name = "n".repeat(crate::config::MAX_NAME_LEN);
        let (addr, len) = address(&name);
        assert_eq!(addr.sun_path[0], 0);
        assert_eq!(len as usize, 2 + 1 + "mod_prison/".len() + name.len());
    }
}
