//! Who the probe runs as: pids, user and group ids, host name, working directory.

use std::ffi::CStr;

use crate::json::{Json, Object};
use crate::sys::{cvt, report, Errno, Outcome};

/// pid, ppid, uid/euid/suid, gid/egid/sgid, groups, hostname, cwd.
pub fn identity() -> Object {
    let mut out = Object::new()
        .with("pid", std::process::id())
        .with("ppid", std::os::unix::process::parent_id());
    out.extend(user_and_group_ids());
    out.insert("groups", report(groups()));
    out.insert("hostname", hostname());
    out.insert("cwd", report(cwd()));
    out
}

fn user_and_group_ids() -> Object {
    let (mut uid, mut euid, mut suid) = (0, 0, 0);
    let (mut gid, mut egid, mut sgid) = (0, 0, 0);
    // SAFETY: getresuid/getresgid only write the three ids through valid pointers; they can fail
    // only with EFAULT, which valid pointers rule out.
    unsafe {
        libc::getresuid(&mut uid, &mut euid, &mut suid);
        libc::getresgid(&mut gid, &mut egid, &mut sgid);
    }
    Object::new()
        .with("uid", uid)
        .with("euid", euid)
        .with("suid", suid)
        .with("gid", gid)
        .with("egid", egid)
        .with("sgid", sgid)
}

fn groups() -> Outcome {
    // SAFETY: a size of 0 asks only for the count and writes nothing.
    let count = cvt(unsafe { libc::getgroups(0, std::ptr::null_mut()) })?;
    let mut list: Vec<libc::gid_t> = vec![0; usize::try_from(count).unwrap_or(0)];
    // SAFETY: the buffer holds `count` gids, and the kernel writes at most that many.
    let count = cvt(unsafe { libc::getgroups(count, list.as_mut_ptr()) })?;
    list.truncate(usize::try_from(count).unwrap_or(0));
    Ok(Object::new().with("list", list))
}

/// The UTS node name: shows whether the probe is in the prison's UTS namespace.
fn hostname() -> Json {
    // SAFETY: utsname is plain data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes NUL-terminated strings into the struct it is given.
    if let Err(errno) = cvt(unsafe { libc::uname(&mut uts) }) {
        return report(Err(errno.into()));
    }
    // SAFETY: the kernel NUL-terminates nodename within its 65 bytes.
    let name = unsafe { CStr::from_ptr(uts.nodename.as_ptr()) };
    name.to_string_lossy().into_owned().into()
}

fn cwd() -> Outcome {
    let path = std::env::current_dir().map_err(Errno::from)?;
    Ok(Object::new().with("path", path.to_string_lossy().into_owned()))
}
