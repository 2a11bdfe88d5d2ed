//! The User/Group the children run as, resolved in the parent and applied in the child.
//!
//! The supplementary group list is computed in the parent, outside the prison, so no NSS lookup
//! (libnss modules, /etc/group, sssd sockets) ever runs inside it; and we switch ids ourselves so
//! mod_unixd's "-1 means DECLINED" failure path can never leave a child as root.

use std::ffi::CString;

use super::{check_ret, SetupError};

/// The unprivileged identity of the httpd children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups, including `gid`.
    pub groups: Vec<libc::gid_t>,
}

impl Identity {
    /// Resolves the supplementary groups of `user_name` (parent, outside the prison).
    pub fn resolve(
        user_name: &str,
        uid: libc::uid_t,
        gid: libc::gid_t,
    ) -> Result<Self, SetupError> {
        let step = || format!("resolving the groups of User {user_name}");
        if uid == 0 || gid == 0 {
            return Err(SetupError::check(
                step(),
                "User and Group must not be root: a prison needs unprivileged children",
            ));
        }
        let name = CString::new(user_name)
            .map_err(|_| SetupError::check(step(), "user name contains NUL"))?;
        let mut groups: Vec<libc::gid_t> = vec![0; 64];
        loop {
            let mut count = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
            // SAFETY: `groups` has room for `count` entries; getgrouplist writes at most that
            // many and stores the needed count in `count`.
            let ret = unsafe {
                libc::getgrouplist(
                    name.as_ptr(),
                    gid as _,
                    groups.as_mut_ptr().cast(),
                    &mut count,
                )
            };
            let count = usize::try_from(count).unwrap_or(0);
            if ret >= 0 {
                groups.truncate(count);
                break;
            }
            if count <= groups.len() || count > 65536 {
                return Err(SetupError::check(step(), "getgrouplist failed"));
            }
            groups.resize(count, 0);
        }
        if groups.contains(&0) {
            return Err(SetupError::check(
                step(),
                "User is a member of group 0 (root); refusing",
            ));
        }
        Ok(Self {
            user_name: user_name.to_owned(),
            uid,
            gid,
            groups,
        })
    }

    /// Switches the calling process (root) to this identity: groups, then gid, then uid.
    pub fn switch(&self) -> Result<(), SetupError> {
        let count = self.groups.len() as _;
        // SAFETY: the pointer and count describe `self.groups`, which outlives the call.
        let ret = unsafe { libc::setgroups(count, self.groups.as_ptr()) };
        check_ret(ret, || {
            format!("setting the supplementary groups of {}", self.user_name)
        })?;
        // SAFETY: plain syscall wrapper on integer ids.
        let ret = unsafe { libc::setresgid(self.gid, self.gid, self.gid) };
        check_ret(ret, || format!("setgid({})", self.gid))?;
        // SAFETY: plain syscall wrapper on integer ids.
        let ret = unsafe { libc::setresuid(self.uid, self.uid, self.uid) };
        check_ret(ret, || {
            format!("setuid({}) for User {}", self.uid, self.user_name)
        })?;
        self.verify_current()
    }

    /// Asserts that real, effective and saved ids are all this identity (never root).
    pub fn verify_current(&self) -> Result<(), SetupError> {
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: the three pointers are valid for writes.
        check_ret(unsafe { libc::getresuid(&mut r, &mut e, &mut s) }, || {
            "reading the child's uids".to_owned()
        })?;
        if [r, e, s] != [self.uid; 3] {
            return Err(SetupError::check(
                "checking the child's user",
                format!(
                    "uids are {r}/{e}/{s}, expected {} (User {})",
                    self.uid, self.user_name
                ),
            ));
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: the three pointers are valid for writes.
        check_ret(unsafe { libc::getresgid(&mut r, &mut e, &mut s) }, || {
            "reading the child's gids".to_owned()
        })?;
        if [r, e, s] != [self.gid; 3] {
            return Err(SetupError::check(
                "checking the child's group",
                format!("gids are {r}/{e}/{s}, expected {}", self.gid),
            ));
        }
        Ok(())
    }
}
