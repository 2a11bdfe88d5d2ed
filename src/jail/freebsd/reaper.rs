//! The reaper: a small root process, outside the jail, that makes the jail die with httpd.
//!
//! The jail is created `persist` because no process is in it yet (docs/freebsd-api.md
//! "jail_set(2) flags": a new jail must persist or attach); something must clear that when
//! httpd goes, even by SIGKILL, or the jail and its rctl rules stay forever. The parent starts
//! one per jail (`Kernel::spawn_reaper`; the process side is in sys.rs):
//! - `setsid()`, so httpd's process-group signals (prefork's `killpg` on stop and restart) do
//!   not reach it, and the usual termination signals ignored;
//! - double-forked, so it is never httpd's child: httpd never reaps an unknown pid and the
//!   reaper is never a zombie (the original used `rfork(RFNOWAIT)` for the same reason);
//! - it waits (kqueue(2)) on a pipe whose write end only the parent holds (every child closes
//!   its copy in `attach`, everything httpd execs loses it by `O_CLOEXEC`), and on
//!   `EVFILT_PROC`/`NOTE_EXIT` for the parent in case some other module's fork-without-exec
//!   keeps a copy;
//! - while it waits, it writes to httpd's error log (its stderr) when the jail's memory use
//!   crosses PrisonMemory's report threshold, once per crossing like rctl's `devctl` action,
//!   which only reaches devd;
//! - at EOF (httpd exited, or the parent retired this jail for a new one at a graceful
//!   restart), it clears `persist` so the jail dies with its last process, waits for that,
//!   removes the jail's rctl rules, and `_exit`s: it never returns into httpd code (the
//!   original's first helper did).
//!
//! This file is the reaper's logic, over [`Kernel`] and [`Wakeups`]: compiled everywhere and
//! driven by the kernel model in the tests.

use super::kernel::{Jid, Kernel};
use super::plan::{racct_memoryuse, rctl_all_filter, JailName};

/// Everything the reaper needs, prepared in the parent before the fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub jid: Jid,
    pub name: String,
    /// `jail:NAME`: its resource use, and every rule on it.
    pub filter: String,
    pub report: Option<u64>,
    /// The httpd parent, whose exit the reaper watches.
    pub master: u32,
}

impl Job {
    pub fn new(jid: Jid, name: &JailName, report: Option<u64>, master: u32) -> Self {
        Self {
            jid,
            name: name.to_string(),
            filter: rctl_all_filter(name),
            report,
            master,
        }
    }
}

/// Why the reaper woke up (kqueue(2), API "kqueue(2)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// `EVFILT_READ` with 8 bytes: the parent's new report threshold (0: none).
    Report(Option<u64>),
    /// `EVFILT_READ` at EOF (or a read error): nobody will ever write again.
    Eof,
    /// `EVFILT_PROC`/`NOTE_EXIT` on the parent (or ESRCH registering it: already gone).
    MasterExited,
    /// The one-second timeout, while a report threshold is set.
    Tick,
    /// kqueue itself failed: retire now rather than wait forever.
    Failed(&'static str),
}

/// Where the reaper's wake-ups come from: kqueue for real, the model in the tests.
pub trait Wakeups {
    /// Blocks until the next event; `tick`: also wake up after a second.
    fn next(&mut self, tick: bool) -> Wake;
}

/// The reaper's life after the fork: watch, then retire the jail.
pub fn serve<K: Kernel, W: Wakeups>(kernel: &K, wakeups: &mut W, job: &Job) {
    let mut report = job.report;
    let mut over = false;
    loop {
        match wakeups.next(report.is_some()) {
            Wake::Tick => over = check_memory(kernel, job, report, over),
            Wake::Report(new) => {
                report = new;
                over = false;
            }
            Wake::Eof | Wake::MasterExited => break,
            Wake::Failed(why) => {
                log(kernel, job, &format!("{why}; retiring the jail now"));
                break;
            }
        }
    }
    retire(kernel, job);
}

fn log<K: Kernel>(kernel: &K, job: &Job, what: &str) {
    kernel.reaper_log(&format!(
        "mod_prison reaper (jail {}, jid {}): {what}",
        job.name, job.jid
    ));
}

/// Logs a crossing of the report threshold, once per crossing; returns whether use is over.
fn check_memory<K: Kernel>(kernel: &K, job: &Job, report: Option<u64>, over: bool) -> bool {
    let Some(report) = report else {
        return false;
    };
    let Some(used) = kernel
        .rctl_usage(&job.filter)
        .ok()
        .as_deref()
        .and_then(racct_memoryuse)
    else {
        return over;
    };
    let now_over = used >= report;
    if now_over && !over {
        log(
            kernel,
            job,
            &format!("memory use {used} bytes crossed the PrisonMemory report threshold {report}"),
        );
    } else if over && !now_over {
        log(
            kernel,
            job,
            &format!("memory use {used} bytes is back under the report threshold {report}"),
        );
    }
    now_over
}

/// Clears `persist`, waits for the jail to die with its last process, removes its rules.
pub fn retire<K: Kernel>(kernel: &K, job: &Job) {
    match kernel.clear_persist(job.jid) {
        Ok(()) => {}
        // Already gone (the parent's teardown did it, or an admin's `jail -r`).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => log(kernel, job, &format!("clearing persist failed: {e}")),
    }
    // The jail dies with its last process: old children finish their requests under their
    // limits, so the rules go only after that.
    while matches!(kernel.lookup(job.jid), Ok((ref name, _)) if *name == job.name) {
        kernel.sleep();
    }
    // Rules are keyed by name (API "rctl(8)"): if a new jail took the name
    // meanwhile, they are its rules now.
    if !matches!(kernel.jid_by_name(&job.name), Ok(None)) {
        return;
    }
    match kernel.rctl_remove(&job.filter) {
        Ok(()) => {}
        // RACCT off: there can be no rules.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        Err(e) => log(
            kernel,
            job,
            &format!("removing the rctl rules {} failed: {e}", job.filter),
        ),
    }
}
