//! The FreeBSD system calls and libjail, each behind a small function that returns the
//! kernel's error text with the errno, and [`Real`], the [`Kernel`] they make. Nothing here
//! decides anything; `plan.rs`, `mod.rs` and `reaper.rs` do.
//!
//! Each call follows the man page section of docs/freebsd-api.md named beside it as
//! `API "jail_set(2)"`; `make check-freebsd-link` proves every libc symbol here exists in
//! FreeBSD 14's libc, and the libjail ones are those of tests/freebsd-link/libjail.symbols.

#![allow(non_camel_case_types)]

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libc::{c_char, c_int, c_uint, c_void, size_t};

use super::kernel::{Jid, Kernel, Racct, SetMode};
use super::plan::{MaskWord, Param};
use super::reaper::{self, Job, Wake, Wakeups};
use crate::jail::{Identity, SetupError};

// ---- libjail (lib/libjail/jail.h; API "libjail(3)"): not in the libc crate --------------------

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
    /// One process-global buffer: call libjail from one thread only (API "libjail(3)"; the
    /// httpd parent in post_config is single-threaded). Read through `addr_of!`, never `&`.
    static mut jail_errmsg: [c_char; JAIL_ERRMSGLEN];
    fn jailparam_init(jp: *mut jailparam, name: *const c_char) -> c_int;
    fn jailparam_import(jp: *mut jailparam, value: *const c_char) -> c_int;
    fn jailparam_set(jp: *mut jailparam, njp: c_uint, flags: c_int) -> c_int;
    fn jailparam_free(jp: *mut jailparam, njp: c_uint);
}

// ---- rctl (sys/sys/rctl.h; API "rctl_add_rule(2)"): system-call stubs in libc.so, no #[link] --
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
/// `security.jail.param.*` sysctls and loads the SysV modules that `sysv*` need (API
/// "libjail(3)"), which raw `jail_set` would not. Returns the jid.
fn set_params(params: &[Param], flags: c_int) -> io::Result<c_int> {
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
        // null: a boolean set by name, API "libjail(3)") and live across the calls, which copy
        // them.
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
    // pointing at jail_errmsg (API "libjail(3)") and does not keep any pointer.
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

// ---- raw jail_set(2)/jail_get(2) (API "jail_set(2)"): name/value iovec pairs -------------------

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

/// jail(8)'s `clear_persist`: `jail_set([jid, nopersist], JAIL_UPDATE)` (API "jail_set(2)",
/// "persist"). The jail then dies with its last process, at once if it has none.
fn clear_persist(jid: c_int) -> io::Result<()> {
    let mut buf = [0u8; JAIL_ERRMSGLEN];
    let mut v = [
        iov_str(c"jid"),
        iov_int(&jid),
        // Booleans are name-only; the value is ignored (API "jail_set(2)").
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

/// The name and path of live jail `jid`; ENOENT if it is gone or dying (API "jail_get(2)").
fn lookup(jid: c_int) -> io::Result<(String, String)> {
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

/// The jid of the live jail called `name`, `None` if there is none (absent or dying; API
/// "jail_get(2)").
fn jid_by_name(name: &str) -> io::Result<Option<c_int>> {
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
/// the jail's root on every kernel version (API "jail_attach(2)").
fn attach(jid: c_int) -> io::Result<()> {
    // SAFETY: plain system call on an integer (API "jail_attach(2)").
    if unsafe { libc::jail_attach(jid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: "/" is NUL-terminated (API "process basics": chdir).
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an integer sysctl; the value's length decides (some are 1-byte bools; API "sysctl(3)").
fn sysctl_int(name: &CStr) -> io::Result<i64> {
    let mut buf = [0u8; 8];
    let mut len = buf.len();
    // SAFETY: `buf` is writable for `len` bytes; the kernel stores the real length in `len`
    // (API "sysctl(3)").
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
fn jailed() -> bool {
    sysctl_int(c"security.jail.jailed").is_ok_and(|v| v != 0)
}

/// The kernel's cpuset size in bytes (`kern.sched.cpusetsize`, API "cpuset(2)"), else the libc
/// crate's.
fn cpusetsize() -> usize {
    match sysctl_int(c"kern.sched.cpusetsize") {
        Ok(n) if n > 0 => n as usize,
        _ => std::mem::size_of::<libc::cpuset_t>(),
    }
}

/// What `cpuset -j JID -l LIST` does: restrict the jail's root set, shared by every process
/// attached to it now or later (API "cpuset(2)").
fn set_jail_cpus(jid: c_int, mask: &[MaskWord]) -> io::Result<()> {
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

/// Whether RACCT/RCTL can work, as rctl(8) diagnoses ENOSYS (API "rctl(8)").
fn racct() -> Racct {
    match sysctl_int(c"kern.racct.enable") {
        Err(_) => Racct::Absent,
        Ok(0) => Racct::Disabled,
        Ok(_) => Racct::Enabled,
    }
}

/// `rctl_add_rule(rule, strlen + 1, NULL, 0)`, as rctl(8) calls it (API "rctl_add_rule(2)").
fn rctl_add(rule: &str) -> io::Result<()> {
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

/// Removes every rule matching `filter`; none matching (ESRCH) is success (API
/// "rctl_add_rule(2)").
fn rctl_remove(filter: &str) -> io::Result<()> {
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

/// The resource use of `filter` (`jail:NAME`), as `rctl -u` shows it (API "rctl_add_rule(2)").
fn rctl_usage(filter: &str) -> io::Result<String> {
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
        // ERANGE: the output buffer is too small (API "rctl_add_rule(2)").
        if err.raw_os_error() != Some(libc::ERANGE) || out.len() >= 1 << 20 {
            return Err(err);
        }
        out.resize(out.len() * 2, 0);
    }
}

/// Closes every open directory descriptor except `keep`. Current kernels refuse
/// `jail_attach` (EPERM) while one is open, older ones let it be used to leave the jail
/// (API "jail_attach(2)"). The open descriptors come from `kern.proc.filedesc` (API
/// "sysctl(3)"), so the cost is the number of open files, not the descriptor limit.
fn close_directory_fds(keep: &[RawFd]) -> io::Result<()> {
    // SAFETY: getpid has no preconditions (API "process basics").
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
        // SAFETY: `st` is writable; a closed fd only makes fstat fail (API "process basics").
        if unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // SAFETY: a directory descriptor this process must not carry into the jail (API
            // "jail_attach(2)").
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// The host name as this process sees it (gethostname(3): the jail's `host.hostname`).
fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates when it fits (API
    // "process basics").
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(c_text(&buf))
}

/// The real kernel.
#[derive(Debug, Clone, Copy)]
pub struct Real;

impl Kernel for Real {
    type Pipe = OwnedFd;

    fn euid(&self) -> u32 {
        // SAFETY: geteuid has no preconditions (API "process basics").
        unsafe { libc::geteuid() }
    }

    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn file_id(&self, path: &Path) -> io::Result<(u64, u64)> {
        let meta = std::fs::metadata(path)?;
        Ok((meta.dev(), meta.ino()))
    }

    fn hostname(&self) -> io::Result<String> {
        hostname()
    }

    fn jailed(&self) -> bool {
        jailed()
    }

    fn switch_user(&self, identity: &Identity) -> Result<(), SetupError> {
        identity.switch()
    }

    fn verify_user(&self, identity: &Identity) -> Result<(), SetupError> {
        identity.verify_current()
    }

    fn set_params(&self, params: &[Param], mode: SetMode) -> io::Result<Jid> {
        // API "jail_set(2) flags": CREATE or UPDATE, never both (create-only parameters with
        // any UPDATE bit are EINVAL).
        let flags = match mode {
            SetMode::Create => libc::JAIL_CREATE,
            SetMode::Update => libc::JAIL_UPDATE,
        };
        set_params(params, flags)
    }

    fn clear_persist(&self, jid: Jid) -> io::Result<()> {
        clear_persist(jid)
    }

    fn lookup(&self, jid: Jid) -> io::Result<(String, String)> {
        lookup(jid)
    }

    fn jid_by_name(&self, name: &str) -> io::Result<Option<Jid>> {
        jid_by_name(name)
    }

    fn close_directory_fds(&self) -> io::Result<()> {
        close_directory_fds(&[])
    }

    fn attach(&self, jid: Jid) -> io::Result<()> {
        attach(jid)
    }

    fn cpusetsize(&self) -> usize {
        cpusetsize()
    }

    fn set_jail_cpus(&self, jid: Jid, mask: &[MaskWord]) -> io::Result<()> {
        set_jail_cpus(jid, mask)
    }

    fn racct(&self) -> Racct {
        racct()
    }

    fn rctl_add(&self, rule: &str) -> io::Result<()> {
        rctl_add(rule)
    }

    fn rctl_remove(&self, filter: &str) -> io::Result<()> {
        rctl_remove(filter)
    }

    fn rctl_usage(&self, filter: &str) -> io::Result<String> {
        rctl_usage(filter)
    }

    fn spawn_reaper(&self, job: &Job) -> io::Result<OwnedFd> {
        spawn_reaper(job)
    }

    fn pipe_into_raw(&self, pipe: OwnedFd) -> RawFd {
        pipe.into_raw_fd()
    }

    unsafe fn adopt_pipe(&self, fd: RawFd) -> io::Result<OwnedFd> {
        // SAFETY: F_GETFD only reads the descriptor's flags; EBADF if it is not open (API
        // "fcntl(2)").
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags == -1 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::FD_CLOEXEC == 0 {
            return Err(io::Error::other(format!(
                "descriptor {fd} is not close-on-exec: not the reaper's pipe"
            )));
        }
        // SAFETY: all-zero is a valid stat buffer, which fstat fills.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable; `fd` is open (checked above; API "fcntl(2)").
        if unsafe { libc::fstat(fd, &mut st) } == -1 {
            return Err(io::Error::last_os_error());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(io::Error::other(format!(
                "descriptor {fd} is not a pipe: not the reaper's pipe"
            )));
        }
        // SAFETY: per the contract, this process left `fd` open for us and nothing else owns
        // it; it was just checked to be an open pipe.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn send_report(&self, pipe: &OwnedFd, report: Option<u64>) -> io::Result<()> {
        let bytes = report.unwrap_or(0).to_ne_bytes();
        // SAFETY: `bytes` is readable for its length; a pipe write of 8 bytes is atomic
        // (API "pipe(2)": at most PIPE_BUF bytes are written at once).
        let ret = unsafe { libc::write(pipe.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if ret != bytes.len() as isize {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    unsafe fn close_inherited(&self, fd: RawFd) {
        // SAFETY: per the contract, the child's copy of the parent's pipe, never used again
        // (API "pipe(2)").
        unsafe { libc::close(fd) };
    }

    fn sleep(&self) {
        // SAFETY: plain sleep (API "process basics").
        unsafe { libc::sleep(1) };
    }

    fn reaper_log(&self, line: &str) {
        // The reaper's own raw line: httpd's log format is not available there.
        let _ = writeln!(io::stderr(), "{line}");
    }
}

// ---- the reaper's process (reaper.rs has its logic; API "fork(2)", "setsid(2)", "kqueue(2)") --

/// pipe2(2) + fork(2): the reaper of `job`, double-forked; returns the parent's write end.
fn spawn_reaper(job: &Job) -> io::Result<OwnedFd> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors (API "pipe(2)").
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two descriptors; each is owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork in the parent (API "fork(2)"). The child only runs `intermediate`, which
    // forks again and `_exit`s; the grandchild runs the reaper and `_exit`s. Neither returns
    // into httpd. FreeBSD's libc and malloc take their locks around fork, so the child may
    // allocate.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(write);
            intermediate(read, job)
        }
        _ => {
            drop(read);
            let mut status = 0;
            // SAFETY: waits for the intermediate child, which exits at once (API "fork(2)").
            if unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
                return Err(io::Error::last_os_error());
            }
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                return Err(io::Error::other("the reaper could not be started"));
            }
            Ok(write)
        }
    }
}

fn intermediate(read: OwnedFd, job: &Job) -> ! {
    // SAFETY: in the forked child; a new session leaves httpd's process group (API
    // "setsid(2)").
    if unsafe { libc::setsid() } < 0 {
        // SAFETY: ends the intermediate child without running httpd's atexit handlers (API
        // "fork(2)").
        unsafe { libc::_exit(1) };
    }
    // SAFETY: as in spawn_reaper; the grandchild never returns.
    match unsafe { libc::fork() } {
        // SAFETY: as above.
        -1 => unsafe { libc::_exit(1) },
        0 => {
            settle(&read, job);
            let mut wakeups = Kqueue::new(&read, job.master);
            reaper::serve(&Real, &mut wakeups, job);
            // SAFETY: the reaper's only exit; no httpd cleanup may run here.
            unsafe { libc::_exit(0) }
        }
        // SAFETY: as above; the grandchild is now init's.
        _ => unsafe { libc::_exit(0) },
    }
}

/// Keeps only the pipe and stderr, leaves any directory, ignores termination signals.
fn settle(read: &OwnedFd, job: &Job) {
    let fd = read.as_raw_fd();
    // SAFETY: closes every descriptor but stdio and the pipe (listeners, logs, the jail's
    // other pipes): the reaper holds nothing of httpd's (API "closefrom(2)").
    unsafe {
        if fd > 3 {
            libc::close_range(3, (fd - 1) as u32, 0);
        }
        libc::closefrom(fd + 1);
    }
    // SAFETY: /dev/null is NUL-terminated; stdin/stdout go there, stderr stays the error log
    // (API "setsid(2)").
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            if null > 2 && null != fd {
                libc::close(null);
            }
        }
        libc::chdir(c"/".as_ptr());
    }
    for sig in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN replaces httpd's handlers, which must not run in the reaper (API
        // "setsid(2)").
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    if let Ok(title) = CString::new(format!("mod_prison reaper of jail {}", job.name)) {
        // SAFETY: "%s" with one NUL-terminated string argument (API "process basics").
        unsafe { libc::setproctitle(c"%s".as_ptr(), title.as_ptr()) };
    }
}

/// The reaper's wake-ups: kqueue(2) `EVFILT_READ` on the pipe and `EVFILT_PROC`/`NOTE_EXIT` on
/// the parent (API "kqueue(2)").
struct Kqueue<'a> {
    kq: Option<OwnedFd>,
    pipe: &'a OwnedFd,
    /// Registering NOTE_EXIT failed with ESRCH: the parent is already gone.
    gone: bool,
}

fn event(ident: usize, filter: i16, fflags: u32) -> libc::kevent {
    // SAFETY: all-zero is a valid kevent (the ext fields differ between ABIs).
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = ident;
    ev.filter = filter;
    ev.flags = libc::EV_ADD;
    ev.fflags = fflags;
    ev
}

impl<'a> Kqueue<'a> {
    fn new(pipe: &'a OwnedFd, master: u32) -> Self {
        // SAFETY: plain system call (API "kqueue(2)").
        let kq = unsafe { libc::kqueue() };
        if kq < 0 {
            return Self {
                kq: None,
                pipe,
                gone: false,
            };
        }
        // SAFETY: kqueue just returned this descriptor.
        let kq = unsafe { OwnedFd::from_raw_fd(kq) };
        let changes = [
            event(pipe.as_raw_fd() as usize, libc::EVFILT_READ, 0),
            event(master as usize, libc::EVFILT_PROC, libc::NOTE_EXIT),
        ];
        let mut gone = false;
        for change in &changes {
            // SAFETY: one valid change, no event list.
            let ret = unsafe {
                libc::kevent(
                    kq.as_raw_fd(),
                    change,
                    1,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null(),
                )
            };
            // ESRCH on the master: httpd already exited.
            gone |= ret < 0;
        }
        Self {
            kq: Some(kq),
            pipe,
            gone,
        }
    }
}

impl Wakeups for Kqueue<'_> {
    fn next(&mut self, tick: bool) -> Wake {
        let Some(kq) = &self.kq else {
            return Wake::Failed("kqueue failed");
        };
        if self.gone {
            return Wake::MasterExited;
        }
        let second = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        let timeout = if tick {
            &second as *const libc::timespec
        } else {
            std::ptr::null()
        };
        loop {
            // SAFETY: all-zero is a valid kevent out-buffer.
            let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
            // SAFETY: no changes; room for one event; `timeout` is null or points at `second`.
            let n =
                unsafe { libc::kevent(kq.as_raw_fd(), std::ptr::null(), 0, &mut ev, 1, timeout) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Wake::Failed("kevent failed");
            }
            if n == 0 {
                return Wake::Tick;
            }
            if ev.filter == libc::EVFILT_PROC {
                return Wake::MasterExited;
            }
            let mut bytes = [0u8; 8];
            // SAFETY: `bytes` is writable for 8 bytes (API "pipe(2)").
            let got = unsafe { libc::read(self.pipe.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) };
            return match got {
                8 => {
                    let report = u64::from_ne_bytes(bytes);
                    Wake::Report((report != 0).then_some(report))
                }
                // EOF (or an error): nobody will ever write again.
                _ => Wake::Eof,
            };
        }
    }
}
