//! The seam between the FreeBSD backend's decisions and the kernel: every jail, cpuset, rctl,
//! process and reaper call the backend makes goes through [`Kernel`]. `sys::Real` implements it
//! with the system calls and libjail (FreeBSD only); the tests implement it with a model of the
//! kernel's jail state (`model.rs`), so the whole lifecycle runs on Linux in `make test`.
//!
//! Each method's contract is the man page section cited beside it, as docs/freebsd-api.md
//! summarises it; the model follows the same text.

use std::fmt::Debug;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use super::plan::{MaskWord, Param};
use super::reaper::Job;
use crate::jail::{Identity, SetupError};

/// A jail id, as jail_set(2) returns it.
pub type Jid = i32;

/// What jail_set(2) is asked to do (API "jail_set(2) flags").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// `JAIL_CREATE`: a new jail; EEXIST if a live one has the name.
    Create,
    /// `JAIL_UPDATE`: change a live jail's parameters; ENOENT if it is gone or dying.
    Update,
}

/// Whether RACCT/RCTL can work, as rctl(8) diagnoses ENOSYS (API "rctl(8)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Racct {
    Absent,
    Disabled,
    Enabled,
}

/// Every kernel call of the FreeBSD backend. Errors carry the kernel's errno (and its message
/// when it gives one); the backend names the step.
pub trait Kernel: Debug {
    /// The parent's end of a reaper's pipe (an `OwnedFd` for real): dropping it closes it,
    /// which retires the reaper's jail.
    type Pipe: Debug;

    // ---- the calling process ---------------------------------------------------------------
    /// geteuid(2).
    fn euid(&self) -> u32;
    /// getpid(2).
    fn pid(&self) -> u32;
    /// stat(2): (st_dev, st_ino) of `path`.
    fn file_id(&self, path: &Path) -> io::Result<(u64, u64)>;
    /// gethostname(3).
    fn hostname(&self) -> io::Result<String>;
    /// sysctl `security.jail.jailed` (jail(8) "security.jail.jailed").
    fn jailed(&self) -> bool;
    /// setgroups/setresgid/setresuid to the httpd User (identity.rs).
    fn switch_user(&self, identity: &Identity) -> Result<(), SetupError>;
    /// Checks the process runs as the httpd User, not root (identity.rs).
    fn verify_user(&self, identity: &Identity) -> Result<(), SetupError>;

    // ---- jails: jail(2), jail_set(2), libjail(3) ---------------------------------------------
    /// libjail(3) `jailparam_init`/`jailparam_import`/`jailparam_set`: returns the jid.
    fn set_params(&self, params: &[Param], mode: SetMode) -> io::Result<Jid>;
    /// jail(8)'s `clear_persist`: `jail_set([jid, nopersist], JAIL_UPDATE)`.
    fn clear_persist(&self, jid: Jid) -> io::Result<()>;
    /// jail_get(2) by jid: the live jail's name and path; ENOENT if gone or dying.
    fn lookup(&self, jid: Jid) -> io::Result<(String, String)>;
    /// jail_get(2) by name: the live jail's jid, `None` if absent or dying.
    fn jid_by_name(&self, name: &str) -> io::Result<Option<Jid>>;
    /// Closes every directory descriptor (jail_attach(2) refuses them, EPERM).
    fn close_directory_fds(&self) -> io::Result<()>;
    /// jail_attach(2), then chdir("/") as jexec(8) does.
    fn attach(&self, jid: Jid) -> io::Result<()>;

    // ---- cpuset(2) -------------------------------------------------------------------------
    /// sysctl `kern.sched.cpusetsize`, in bytes.
    fn cpusetsize(&self) -> usize;
    /// cpuset_setaffinity(2) `CPU_LEVEL_WHICH, CPU_WHICH_JAIL, jid`.
    fn set_jail_cpus(&self, jid: Jid, mask: &[MaskWord]) -> io::Result<()>;

    // ---- rctl(8), rctl_add_rule(2) ---------------------------------------------------------
    /// sysctl `kern.racct.enable`.
    fn racct(&self) -> Racct;
    /// rctl_add_rule(2).
    fn rctl_add(&self, rule: &str) -> io::Result<()>;
    /// rctl_remove_rule(2) of every rule matching `filter`; none matching (ESRCH) is success.
    fn rctl_remove(&self, filter: &str) -> io::Result<()>;
    /// rctl_get_racct(2): the resource use of `filter`, as `rctl -u` shows it.
    fn rctl_usage(&self, filter: &str) -> io::Result<String>;

    // ---- the reaper (reaper.rs) --------------------------------------------------------------
    /// pipe2(2), fork(2) twice, setsid(2); the grandchild runs `reaper::serve` for `job` with
    /// kqueue(2) `EVFILT_READ` on the pipe and `EVFILT_PROC`/`NOTE_EXIT` on the parent.
    fn spawn_reaper(&self, job: &Job) -> io::Result<Self::Pipe>;
    /// Gives up ownership of the pipe without closing it (it stays open for the next
    /// generation under this number).
    fn pipe_into_raw(&self, pipe: Self::Pipe) -> RawFd;
    /// Takes back a pipe `pipe_into_raw` left open, after checking it is an open
    /// close-on-exec pipe (fcntl(2) `F_GETFD`, fstat(2)).
    ///
    /// # Safety
    /// `fd` must come from `pipe_into_raw` in this very process, and nothing else may own or
    /// have closed it since.
    unsafe fn adopt_pipe(&self, fd: RawFd) -> io::Result<Self::Pipe>;
    /// write(2) of the new memory report threshold on the pipe (0: none).
    fn send_report(&self, pipe: &Self::Pipe, report: Option<u64>) -> io::Result<()>;
    /// close(2) of a child's inherited copy of the parent's pipe.
    ///
    /// # Safety
    /// `fd` is the parent's pipe number, which the calling child never uses again.
    unsafe fn close_inherited(&self, fd: RawFd);
    /// The reaper waits a second for the jail to die (sleep(3)).
    fn sleep(&self);
    /// A line on the reaper's stderr, which httpd pointed at its main error log (the reaper is
    /// a process of its own: it has nobody to return notes to).
    fn reaper_log(&self, line: &str);
}
