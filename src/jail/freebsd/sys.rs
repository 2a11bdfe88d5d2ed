//! The FreeBSD system calls and libjail, each behind a small function that returns the
//! kernel's error text with the errno. Nothing here decides anything; `plan.rs` does.
//!
//! "API §n" is a section of `../shared/research/freebsd-api.md`.

#![allow(non_camel_case_types)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;

use libc::{c_char, c_int, c_uint, c_void, size_t};

use super::plan::{MaskWord, Param};

// ---- libjail (lib/libjail/jail.h; API §1.1): not in the libc crate --------------------------

/// `struct jailparam`, field for field (48 bytes on amd64).
#[repr(C)]
struct jailparam {
    jp_name: *mut c_char,
    jp_value: *mut c_void,
    jp_valuelen: size_t,
    jp_elemlen: size_t,
    jp_ctltype: c_int,
    jp_structtype: c_int,
    jp_flags: c_uint,
}

const JAIL_ERRMSGLEN: usize = 1024;

#[link(name = "jail")]
unsafe extern "C" {
    /// One process-global buffer: call libjail from one thread only (API §6 item 20; the
    /// httpd parent in post_config is single-threaded). Read through `addr_of!`, never `&`.
    static mut jail_errmsg: [c_char; JAIL_ERRMSGLEN];
    fn jailparam_init(jp: *mut jailparam, name: *const c_char) -> c_int;
    fn jailparam_import(jp: *mut jailparam, value: *const c_char) -> c_int;
    fn jailparam_set(jp: *mut jailparam, njp: c_uint, flags: c_int) -> c_int;
    fn jailparam_free(jp: *mut jailparam, njp: c_uint);
}

// ---- rctl(2) (sys/sys/rctl.h; API §4): system-call stubs in libc.so, so no #[link] ----------
unsafe extern "C" {
    fn rctl_get_racct(
        inbufp: *const c_char,
        inbuflen: size_t,
        outbufp: *mut c_char,
        outbuflen: size_t,
    ) -> c_int;
    fn rctl_add_rule(
        inbufp: *const c_char,
        inbuflen: size_t,
        outbufp: *mut c_char,
        outbuflen: size_t,
    ) -> c_int;
    fn rctl_remove_rule(
        inbufp: *const c_char,
        inbuflen: size_t,
        outbufp: *mut c_char,
        outbuflen: size_t,
    ) -> c_int;
}

/// `errno` with the kernel's own words in front when there are some.
fn with_message(errno: io::Error, message: &str) -> io::Error {
    let message = message.trim();
    if message.is_empty() {
        errno
    } else {
        io::Error::new(errno.kind(), format!("{message} ({errno})"))
    }
}

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn libjail_message() -> String {
    // SAFETY: libjail NUL-terminates jail_errmsg (it starts zeroed and every writer uses
    // strlcpy/snprintf/the kernel's bounded copy); we only read it, single-threaded.
    unsafe { CStr::from_ptr(std::ptr::addr_of!(jail_errmsg).cast::<c_char>()) }
        .to_string_lossy()
        .into_owned()
}

/// `jailparam_init` + `jailparam_import` + `jailparam_set`, i.e. what `jail_setv` does, for a
/// list whose length is only known at run time. libjail types each value from the
/// `security.jail.param.*` sysctls and loads the SysV modules that `sysv*` need (API §1.1),
/// which raw `jail_set` would not. Returns the jid.
pub fn set_params(params: &[Param], flags: c_int) -> io::Result<c_int> {
    let mut names = Vec::with_capacity(params.len());
    let mut values = Vec::with_capacity(params.len());
    for param in params {
        names.push(c_string(param.name)?);
        values.push(param.value.as_deref().map(c_string).transpose()?);
    }
    // SAFETY: all-zero is a valid jailparam (null pointers, zero lengths); jailparam_init
    // memsets it again anyway.
    let mut jp: Vec<jailparam> = (0..params.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let count =
        c_uint::try_from(jp.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    for (i, (name, value)) in names.iter().zip(&values).enumerate() {
        let value_ptr = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: `jp[i]` is valid for writes; `name` and `value_ptr` are NUL-terminated (or
        // null: a boolean set by name, API §1.1) and live across the calls, which copy them.
        let ok = unsafe {
            jailparam_init(&mut jp[i], name.as_ptr()) == 0
                && jailparam_import(&mut jp[i], value_ptr) == 0
        };
        if !ok {
            let err = with_message(io::Error::last_os_error(), &libjail_message());
            // SAFETY: frees what init/import allocated in the first i+1 entries (a failed init
            // frees its own entry and leaves it zeroed; freeing a zeroed entry is a no-op).
            unsafe { jailparam_free(jp.as_mut_ptr(), (i + 1) as c_uint) };
            return Err(err);
        }
    }
    // SAFETY: `jp` holds `count` initialised entries; jailparam_set appends the errmsg iovec
    // pointing at jail_errmsg (API §1.1) and does not keep any pointer.
    let jid = unsafe { jailparam_set(jp.as_mut_ptr(), count, flags) };
    let result = if jid < 0 {
        Err(with_message(io::Error::last_os_error(), &libjail_message()))
    } else {
        Ok(jid)
    };
    // SAFETY: frees the names and values libjail allocated; the Vec itself is ours.
    unsafe { jailparam_free(jp.as_mut_ptr(), count) };
    result
}

// ---- raw jail_set(2)/jail_get(2) (API §1.3): name/value iovec pairs --------------------------

fn iov(base: *const c_void, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: base.cast_mut(),
        iov_len: len,
    }
}

fn iov_str(s: &CStr) -> libc::iovec {
    iov(s.as_ptr().cast(), s.to_bytes_with_nul().len())
}

fn iov_int(v: &c_int) -> libc::iovec {
    iov((v as *const c_int).cast(), std::mem::size_of::<c_int>())
}

fn c_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// jail(8)'s `clear_persist`: `jail_set([jid, nopersist], JAIL_UPDATE)` (API §5). The jail
/// then dies with its last process, at once if it has none.
pub fn clear_persist(jid: c_int) -> io::Result<()> {
    let mut buf = [0u8; JAIL_ERRMSGLEN];
    let mut v = [
        iov_str(c"jid"),
        iov_int(&jid),
        // Booleans are name-only; the value is ignored (API §1.3).
        iov_str(c"nopersist"),
        iov(std::ptr::null(), 0),
        iov_str(c"errmsg"),
        iov(buf.as_mut_ptr().cast(), buf.len()),
    ];
    // SAFETY: every iovec points at live memory of the stated length; the kernel writes only
    // into the errmsg buffer, which is writable.
    let ret = unsafe { libc::jail_set(v.as_mut_ptr(), v.len() as c_uint, libc::JAIL_UPDATE) };
    if ret < 0 {
        return Err(with_message(io::Error::last_os_error(), &c_text(&buf)));
    }
    Ok(())
}

/// The name and path of live jail `jid`; ENOENT if it is gone or dying (API §1.3 jail_get).
pub fn lookup(jid: c_int) -> io::Result<(String, String)> {
    let mut name = [0u8; 256]; // MAXHOSTNAMELEN
    let mut path = [0u8; 1024]; // MAXPATHLEN
    let mut buf = [0u8; JAIL_ERRMSGLEN];
    let mut v = [
        iov_str(c"jid"),
        iov_int(&jid),
        iov_str(c"name"),
        iov(name.as_mut_ptr().cast(), name.len()),
        iov_str(c"path"),
        iov(path.as_mut_ptr().cast(), path.len()),
        iov_str(c"errmsg"),
        iov(buf.as_mut_ptr().cast(), buf.len()),
    ];
    // SAFETY: the output buffers are writable and as large as the kernel's limits for these
    // strings; the kernel writes at most iov_len bytes into each.
    let ret = unsafe { libc::jail_get(v.as_mut_ptr(), v.len() as c_uint, 0) };
    if ret < 0 {
        return Err(with_message(io::Error::last_os_error(), &c_text(&buf)));
    }
    Ok((c_text(&name), c_text(&path)))
}

/// The jid of the live jail called `name`, `None` if there is none (absent or dying).
pub fn jid_by_name(name: &str) -> io::Result<Option<c_int>> {
    let name = c_string(name)?;
    let mut v = [iov_str(c"name"), iov_str(&name)];
    // SAFETY: both iovecs point at NUL-terminated strings with their lengths.
    let jid = unsafe { libc::jail_get(v.as_mut_ptr(), v.len() as c_uint, 0) };
    if jid >= 0 {
        return Ok(Some(jid));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT) => Ok(None),
        _ => Err(err),
    }
}

/// Child side, still root: join the jail, then `chdir("/")` as jexec(8) does, so the cwd is
/// the jail's root on every kernel version (API §1.3, §6 item 2).
pub fn attach(jid: c_int) -> io::Result<()> {
    // SAFETY: plain system call on an integer.
    if unsafe { libc::jail_attach(jid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: "/" is NUL-terminated.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an integer sysctl of `int` size; the value's length decides (some are 1-byte bools).
fn sysctl_int(name: &CStr) -> io::Result<i64> {
    let mut buf = [0u8; 8];
    let mut len = buf.len();
    // SAFETY: `buf` is writable for `len` bytes; the kernel stores the real length in `len`.
    let ret = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match len {
        1 => i64::from(buf[0]),
        4 => i64::from(i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])),
        8 => i64::from_ne_bytes(buf),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    })
}

/// `security.jail.jailed`: is this process itself in a jail (e.g. an rc service jail)?
pub fn jailed() -> bool {
    sysctl_int(c"security.jail.jailed").is_ok_and(|v| v != 0)
}

/// The kernel's cpuset size in bytes (`kern.sched.cpusetsize`, API §3), else the libc crate's.
pub fn cpusetsize() -> usize {
    match sysctl_int(c"kern.sched.cpusetsize") {
        Ok(n) if n > 0 => n as usize,
        _ => std::mem::size_of::<libc::cpuset_t>(),
    }
}

/// What `cpuset -j JID -l LIST` does: restrict the jail's root set, shared by every process
/// attached to it now or later (API §3).
pub fn set_jail_cpus(jid: c_int, mask: &[MaskWord]) -> io::Result<()> {
    let bytes = std::mem::size_of_val(mask);
    // SAFETY: `mask` is `bytes` long; the kernel reads exactly `setsize` bytes from it (the
    // pointer type is the crate's cpuset_t, whose own size we do not rely on).
    let ret = unsafe {
        libc::cpuset_setaffinity(
            libc::CPU_LEVEL_WHICH,
            libc::CPU_WHICH_JAIL,
            libc::id_t::from(jid),
            bytes,
            mask.as_ptr().cast::<libc::cpuset_t>(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether RACCT/RCTL can work, as rctl(8) diagnoses ENOSYS (API §4 "RACCT must be on").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Racct {
    Absent,
    Disabled,
    Enabled,
}

pub fn racct() -> Racct {
    match sysctl_int(c"kern.racct.enable") {
        Err(_) => Racct::Absent,
        Ok(0) => Racct::Disabled,
        Ok(_) => Racct::Enabled,
    }
}

/// `rctl_add_rule(rule, strlen + 1, NULL, 0)`, as rctl(8) calls it.
pub fn rctl_add(rule: &str) -> io::Result<()> {
    let rule = c_string(rule)?;
    // SAFETY: `rule` is NUL-terminated and its length includes the NUL; no output buffer.
    let ret = unsafe {
        rctl_add_rule(
            rule.as_ptr(),
            rule.to_bytes_with_nul().len(),
            std::ptr::null_mut(),
            0,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes every rule matching `filter`; none matching (ESRCH) is success.
pub fn rctl_remove(filter: &str) -> io::Result<()> {
    let filter = c_string(filter)?;
    // SAFETY: as in rctl_add.
    let ret = unsafe {
        rctl_remove_rule(
            filter.as_ptr(),
            filter.to_bytes_with_nul().len(),
            std::ptr::null_mut(),
            0,
        )
    };
    if ret != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// The resource use of `filter` (`jail:NAME`), as `rctl -u` shows it.
pub fn rctl_usage(filter: &str) -> io::Result<String> {
    let filter = c_string(filter)?;
    let mut out = vec![0u8; 4096];
    loop {
        // SAFETY: input as in rctl_add; `out` is writable for its length.
        let ret = unsafe {
            rctl_get_racct(
                filter.as_ptr(),
                filter.to_bytes_with_nul().len(),
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        if ret == 0 {
            return Ok(c_text(&out));
        }
        let err = io::Error::last_os_error();
        // ERANGE: the output buffer is too small (API §4).
        if err.raw_os_error() != Some(libc::ERANGE) || out.len() >= 1 << 20 {
            return Err(err);
        }
        out.resize(out.len() * 2, 0);
    }
}

/// Closes every open directory descriptor except `keep`. Current kernels refuse
/// `jail_attach` (EPERM) while one is open, older ones let it be used to leave the jail
/// (API §1.3, §6 item 2). The open descriptors come from `kern.proc.filedesc`, so the cost is
/// the number of open files, not the descriptor limit.
pub fn close_directory_fds(keep: &[RawFd]) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_FILEDESC,
        pid,
    ];
    let mut buf: Vec<u8> = Vec::new();
    for _ in 0..4 {
        let mut len: size_t = 0;
        // SAFETY: a size query: no output buffer, `len` receives the size.
        let ret = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as c_uint,
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        len += len / 4 + 4096;
        buf.resize(len, 0);
        // SAFETY: `buf` is writable for `len` bytes; the kernel stores the length used.
        let ret = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as c_uint,
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if ret == 0 {
            buf.truncate(len);
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOMEM) {
            return Err(err);
        }
        buf.clear();
    }
    // Packed `struct kinfo_file` records: kf_structsize (int) at offset 0, kf_fd at 8.
    let int_at = |at: usize| -> Option<i32> {
        let bytes = buf.get(at..at + 4)?;
        Some(i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let mut at = 0;
    let mut fds = Vec::new();
    while let (Some(size), Some(fd)) = (int_at(at), int_at(at + 8)) {
        if size <= 0 {
            break;
        }
        // Negative kf_fd are the cwd, root, jail and text vnodes, not descriptors.
        if fd >= 0 && !keep.contains(&fd) {
            fds.push(fd);
        }
        at += size as usize;
    }
    for fd in fds {
        // SAFETY: an all-zero stat is a valid out-buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable; a closed fd only makes fstat fail.
        if unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // SAFETY: a directory descriptor this process must not carry into the jail.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// The host name as this process sees it.
pub fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates when it fits.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(c_text(&buf))
}
