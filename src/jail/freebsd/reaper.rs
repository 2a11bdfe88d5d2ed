//! The reaper: a small root process, outside the jail, that makes the jail die with httpd.
//!
//! The jail is created `persist` because no process is in it yet (API §5); something must
//! clear that when httpd goes, even by SIGKILL, or the jail and its rctl rules stay forever.
//! The reaper is forked by the parent once per jail and:
//! - calls `setsid()`, so httpd's process-group signals (prefork's `killpg` on stop and
//!   restart) do not reach it (API §5, §6 item 18), and ignores the usual termination signals;
//! - is double-forked, so it is never httpd's child: httpd never reaps an unknown pid and the
//!   reaper is never a zombie (the original used `rfork(RFNOWAIT)` for the same reason);
//! - waits on a pipe whose write end only the parent holds (every child closes its copy in
//!   `attach`, everything httpd execs loses it by `O_CLOEXEC`), and on kqueue `NOTE_EXIT` for
//!   the parent in case some other module's fork-without-exec keeps a copy;
//! - while it waits, writes to httpd's error log (its stderr) when the jail's memory use
//!   crosses PrisonMemory's report threshold, once per crossing like rctl's `devctl` action,
//!   which only reaches devd;
//! - at EOF (httpd exited, or the parent retired this jail for a new one at a graceful
//!   restart), clears `persist` so the jail dies with its last process, waits for that, removes
//!   the jail's rctl rules, and `_exit`s: it never returns into httpd code (the original's
//!   first helper did).

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use libc::c_int;

use super::plan::{racct_memoryuse, rctl_all_filter, JailName};
use super::sys;
use crate::jail::{check_ret, SetupError};

/// The parent's end of the reaper's pipe. Writing sends a new report threshold; dropping it
/// retires the jail.
#[derive(Debug)]
pub struct Reaper {
    pipe: OwnedFd,
}

impl Reaper {
    /// Gives up ownership without closing: the pipe stays open in the parent under this
    /// number, for the next generation to [`Reaper::adopt`] after httpd reloads the module.
    pub fn into_raw_fd(self) -> RawFd {
        self.pipe.into_raw_fd()
    }

    /// Takes back the pipe a previous generation left open under number `fd`, after checking
    /// that it is an open, close-on-exec pipe (as `spawn` made it).
    ///
    /// # Safety
    /// `fd` must come from [`Reaper::into_raw_fd`] in this very process, and nothing else may
    /// own or have closed it since.
    pub unsafe fn adopt(fd: RawFd) -> io::Result<Self> {
        // SAFETY: F_GETFD only reads the descriptor's flags; EBADF if it is not open.
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
        // SAFETY: `st` is writable; `fd` is open (checked above).
        if unsafe { libc::fstat(fd, &mut st) } == -1 {
            return Err(io::Error::last_os_error());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(io::Error::other(format!(
                "descriptor {fd} is not a pipe: not the reaper's pipe"
            )));
        }
        Ok(Self {
            // SAFETY: per the contract, this process left `fd` open for us and nothing else
            // owns it; it was just checked to be an open pipe.
            pipe: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Tells the reaper the (new) PrisonMemory report threshold after a graceful restart.
    pub fn set_report(&self, report: Option<u64>) -> Result<(), SetupError> {
        let bytes = report.unwrap_or(0).to_ne_bytes();
        // SAFETY: `bytes` is readable for its length; a pipe write of 8 bytes is atomic.
        let ret = unsafe { libc::write(self.pipe.as_raw_fd(), bytes.as_ptr().cast(), 8) };
        check_ret(ret as i64, || {
            "telling the reaper the new report threshold".to_owned()
        })
        .map(drop)
    }
}

/// Everything the reaper needs, prepared before the fork.
#[derive(Clone)]
struct Job {
    jid: c_int,
    name: String,
    /// `jail:NAME`: its resource use, and every rule on it.
    filter: String,
    report: Option<u64>,
    master: libc::pid_t,
}

/// Forks the reaper for jail `jid` called `name`.
pub fn spawn(jid: c_int, name: &JailName, report: Option<u64>) -> Result<Reaper, SetupError> {
    let step = || format!("starting the reaper of jail {name}");
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check_ret(ret, step)?;
    // SAFETY: pipe2 just returned these two descriptors; each is owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let job = Job {
        jid,
        name: name.to_string(),
        filter: rctl_all_filter(name),
        report,
        // SAFETY: getpid has no preconditions.
        master: unsafe { libc::getpid() },
    };
    // SAFETY: fork in the parent. The child only runs `intermediate`, which forks again and
    // `_exit`s; the grandchild runs `run` and `_exit`s. Neither returns into httpd. FreeBSD's
    // libc and malloc take their locks around fork, so the child may allocate.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(SetupError::last_os_error(step())),
        0 => {
            drop(write);
            intermediate(read, &job)
        }
        _ => {
            drop(read);
            let mut status = 0;
            // SAFETY: waits for the intermediate child, which exits at once.
            let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
            check_ret(ret, step)?;
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                return Err(SetupError::check(step(), "the reaper could not be started"));
            }
            Ok(Reaper { pipe: write })
        }
    }
}

fn intermediate(read: OwnedFd, job: &Job) -> ! {
    // SAFETY: in the forked child; a new session leaves httpd's process group.
    if unsafe { libc::setsid() } < 0 {
        // SAFETY: ends the intermediate child without running httpd's atexit handlers.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: as in spawn; the grandchild never returns.
    match unsafe { libc::fork() } {
        // SAFETY: as above.
        -1 => unsafe { libc::_exit(1) },
        0 => run(read, job),
        // SAFETY: as above; the grandchild is now init's.
        _ => unsafe { libc::_exit(0) },
    }
}

fn log(job: &Job, what: &str) {
    // Raw line on stderr, which httpd pointed at its main error log.
    let _ = writeln!(
        std::io::stderr(),
        "mod_prison reaper (jail {}, jid {}): {what}",
        job.name,
        job.jid
    );
}

fn run(read: OwnedFd, job: &Job) -> ! {
    let mut job = job.clone();
    settle(&read, &job);
    watch(&read, &mut job);
    retire(&job);
    // SAFETY: the reaper's only exit; no httpd cleanup may run here.
    unsafe { libc::_exit(0) }
}

/// Keeps only the pipe and stderr, leaves any directory, ignores termination signals.
fn settle(read: &OwnedFd, job: &Job) {
    let fd = read.as_raw_fd();
    // SAFETY: closes every descriptor but stdio and the pipe (listeners, logs, the jail's
    // other pipes): the reaper holds nothing of httpd's.
    unsafe {
        if fd > 3 {
            libc::close_range(3, (fd - 1) as u32, 0);
        }
        libc::closefrom(fd + 1);
    }
    // SAFETY: /dev/null is NUL-terminated; stdin/stdout go there, stderr stays the error log.
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
        // SAFETY: SIG_IGN replaces httpd's handlers, which must not run in the reaper.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    if let Ok(title) = std::ffi::CString::new(format!("mod_prison reaper of jail {}", job.name)) {
        // SAFETY: "%s" with one NUL-terminated string argument.
        unsafe { libc::setproctitle(c"%s".as_ptr(), title.as_ptr()) };
    }
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

/// Returns when httpd is gone or the parent retired this jail.
fn watch(read: &OwnedFd, job: &mut Job) {
    // SAFETY: plain system call.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        log(job, "kqueue failed; retiring the jail now");
        return;
    }
    let changes = [
        event(read.as_raw_fd() as usize, libc::EVFILT_READ, 0),
        event(job.master as usize, libc::EVFILT_PROC, libc::NOTE_EXIT),
    ];
    for change in &changes {
        // SAFETY: one valid change, no event list.
        let ret = unsafe { libc::kevent(kq, change, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
        // ESRCH on the master: httpd already exited.
        if ret < 0 {
            return;
        }
    }
    let mut over = false;
    loop {
        let second = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        let timeout = if job.report.is_some() {
            &second as *const libc::timespec
        } else {
            std::ptr::null()
        };
        // SAFETY: all-zero is a valid kevent out-buffer.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        // SAFETY: no changes; room for one event; `timeout` is null or points at `second`.
        let n = unsafe { libc::kevent(kq, std::ptr::null(), 0, &mut ev, 1, timeout) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        if n == 0 {
            over = check_memory(job, over);
            continue;
        }
        if ev.filter == libc::EVFILT_PROC {
            return;
        }
        let mut bytes = [0u8; 8];
        // SAFETY: `bytes` is writable for 8 bytes.
        let got = unsafe { libc::read(read.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) };
        match got {
            8 => {
                let report = u64::from_ne_bytes(bytes);
                job.report = (report != 0).then_some(report);
                over = false;
            }
            // EOF (or an error): nobody will ever write again.
            _ => return,
        }
    }
}

/// Logs a crossing of the report threshold, once per crossing; returns whether use is over.
fn check_memory(job: &Job, over: bool) -> bool {
    let Some(report) = job.report else {
        return false;
    };
    let Some(used) = sys::rctl_usage(&job.filter)
        .ok()
        .as_deref()
        .and_then(racct_memoryuse)
    else {
        return over;
    };
    let now_over = used >= report;
    if now_over && !over {
        log(
            job,
            &format!("memory use {used} bytes crossed the PrisonMemory report threshold {report}"),
        );
    } else if over && !now_over {
        log(
            job,
            &format!("memory use {used} bytes is back under the report threshold {report}"),
        );
    }
    now_over
}

fn retire(job: &Job) {
    match sys::clear_persist(job.jid) {
        Ok(()) => {}
        // Already gone (the parent's teardown did it, or an admin's `jail -r`).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => log(job, &format!("clearing persist failed: {e}")),
    }
    // The jail dies with its last process: old children finish their requests under their
    // limits, so the rules go only after that.
    while matches!(sys::lookup(job.jid), Ok((ref name, _)) if *name == job.name) {
        // SAFETY: plain sleep.
        unsafe { libc::sleep(1) };
    }
    // Rules are keyed by name: if a new jail took the name meanwhile, they are its rules now.
    match sys::jid_by_name(&job.name) {
        Ok(None) => {}
        _ => return,
    }
    match sys::rctl_remove(&job.filter) {
        Ok(()) => {}
        // RACCT off: there can be no rules.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        Err(e) => log(
            job,
            &format!("removing the rctl rules {} failed: {e}", job.filter),
        ),
    }
}
