//! FreeBSD backend: the prison is a persistent jail made with libjail, its cpuset restricted
//! and its rctl rules set, and a reaper that makes it die with httpd. Each child joins it with
//! `jail_attach` and becomes the httpd User.
//!
//! - `plan`: the jail as data (parameters, rctl rules, cpuset mask, names). Pure.
//! - this file: the lifecycle (build, attach, verify, release, teardown) over [`Kernel`].
//! - `kernel`: the seam, every kernel call the backend makes; `sys::Real` implements it with
//!   libjail, jail_set/jail_get/jail_attach, cpuset, rctl, fork and kqueue (FreeBSD only), the
//!   tests with a model of the kernel's jail state (`model.rs`).
//! - `reaper`: what the process that clears `persist` and removes the rules when httpd goes
//!   does (its fork and kqueue are in sys.rs).
//! - `error`: one variant per step that can fail.
//!
//! All but `sys` compile and are tested on every platform. `API "x"` is section "x" of
//! docs/freebsd-api.md, the man page facts the code follows.
//!
//! The original C module's FreeBSD bugs and what stops each here:
//! - not root in post_config returned errno, usually 0 (OK): `build` returns an error;
//! - jail creation, security, cpuset and rctl failures were logged and startup went on (or
//!   returned a stale 0): every step is `?`, and a new jail's reaper undoes a half-built one;
//! - `chdir(PrisonDir)` in the parent: the parent never changes directory;
//! - `sizeof(mask)` of a pointer, `8-10` stored as {8,10,10}, `> MAXCPU`: `plan::cpuset_mask`
//!   and its tests;
//! - the jail reused by name alone, and "back to None undoes nothing": a jail is reused only
//!   from the carry this very process handed itself across the restart (`plan::Carry`, jid,
//!   name, path and master pid checked) and only by `plan::reuse` (tested);
//! - EEXIST at restart: a live jail is reused or a new generation name is chosen, never
//!   created twice under one name;
//! - rctl rules never removed: removed for a new jail's name and when a jail goes (reaper,
//!   `teardown`);
//! - the persistence helper returning into httpd, sleeping 10 ms, or being killed by httpd's
//!   `killpg`: see `reaper`;
//! - `vm.overcommit` required for PrisonMemory: not needed, rctl's `memoryuse` does not
//!   depend on it;
//! - a jail name with a `.` (hierarchical): `plan::JailName` refuses it (tested).

pub mod connect;
pub mod error;
pub mod kernel;
pub mod plan;
pub mod reaper;

#[cfg(test)]
mod model;
#[cfg(target_os = "freebsd")]
mod sys;

use std::io;
use std::os::fd::RawFd;

pub use error::Error;
use error::NameError;
use kernel::{Jid, Kernel, SetMode};
use plan::{cpuset_mask, rctl_all_filter, reuse, Built, Carry, JailName, JailPlan, Replace, Reuse};
use reaper::Job;

#[cfg(target_os = "freebsd")]
use crate::config::MpmCeiling;
use crate::config::Prison;
use crate::jail::Identity;

/// What the httpd glue uses on FreeBSD: the jail over the real kernel.
#[cfg(target_os = "freebsd")]
pub type Prepared = Jail<sys::Real>;

/// The jail of the generation being built, with the parent's end of its reaper's pipe:
/// dropping it (an error part-way, or a predecessor being retired) closes the pipe, and the
/// reaper clears `persist`.
#[derive(Debug)]
struct Owned<K: Kernel> {
    master: u32,
    jid: Jid,
    name: JailName,
    built: Built,
    reaper: K::Pipe,
}

/// What the children of one generation need to join the prison, and what the parent needs to
/// hand the jail to the next generation (`release`) or tear it down (`teardown`).
#[derive(Debug)]
pub struct Jail<K: Kernel> {
    kernel: K,
    jid: Jid,
    name: JailName,
    hostname: String,
    identity: Identity,
    /// The parent's end of the reaper's pipe: each child closes its copy. Owned by the parent
    /// (`master`) and given up explicitly: `release` leaves it open for the next generation,
    /// `teardown` closes it. A plain number, so dropping a `Jail` in a child (which closed its
    /// copy in `attach`) never closes anything.
    reaper_fd: RawFd,
    /// The httpd parent that built the jail.
    master: u32,
    /// The jail's create-only parameters and cpuset, for the next generation's reuse.
    built: Built,
    /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
    root_id: (u64, u64),
    /// What the build noted for the error log; the first `monitor` hands them out.
    notes: Vec<String>,
}

impl<K: Kernel> Jail<K> {
    /// Parent, root (post_config, pass 2 and every restart): creates the jail, or reuses the
    /// live one at a graceful restart, then sets its cpuset and rctl rules. `carry` is what the
    /// previous generation's `release` returned (`None` at first start): the live jail is reused
    /// when it is verifiably ours (made by this very process, and the kernel still has it under
    /// the carried jid, name and path) and its create-only parameters are unchanged; otherwise a
    /// new jail is made and the old one retired (its reaper's pipe closed: `persist` cleared, it
    /// dies with its last old child).
    ///
    /// Any failure stops httpd with the kernel's own message; nothing is left half-done (a new
    /// jail's reaper clears it, and a carried jail is retired).
    pub fn build_with(
        kernel: K,
        prison: &Prison,
        identity: &Identity,
        carry: Option<&str>,
    ) -> Result<Self, Error> {
        let mut notes = Vec::new();
        match Self::build_noting(kernel, prison, identity, carry, &mut notes) {
            Ok(mut jail) => {
                jail.notes = notes;
                Ok(jail)
            }
            Err(e) => Err(e.with_notes(notes)),
        }
    }

    fn build_noting(
        kernel: K,
        prison: &Prison,
        identity: &Identity,
        carry: Option<&str>,
        notes: &mut Vec<String>,
    ) -> Result<Self, Error> {
        let base = prison.name.to_string();
        // Taken first, so that whatever fails below, a carried pipe is closed (its jail
        // retired) rather than left open until httpd exits.
        let previous = carry.and_then(|text| adopt(&kernel, text, notes));
        if kernel.euid() != 0 {
            // The original logged this and returned errno (usually 0: OK), so children later
            // dereferenced a missing jail. Here it is an error.
            return Err(Error::NotRoot { prison: base });
        }
        let plan = JailPlan::new(prison).map_err(|source| Error::Plan {
            prison: base.clone(),
            source,
        })?;
        let root_id = kernel
            .file_id(&prison.dir)
            .map_err(|source| Error::PrisonDir {
                prison: base,
                path: plan.path.clone(),
                source,
            })?;
        let (new, retiring) = match previous {
            Some(mut old) if reusable(&kernel, &old, &plan, notes) => {
                // On error `old` is dropped: httpd stops, and its reaper clears it.
                update(&kernel, &mut old, &plan)?;
                (old, None)
            }
            old => {
                let retiring = old.as_ref().map(|o| &o.name);
                (create(&kernel, &plan, retiring, notes)?, old)
            }
        };
        // Closing the old reaper's pipe retires the old jail: persist cleared, it dies with
        // the last old child, then its rules go. Never jail_remove: that would SIGKILL old
        // children in the middle of a request (API "jail_remove(2)").
        drop(retiring);
        let reaper_fd = kernel.pipe_into_raw(new.reaper);
        Ok(Self {
            jid: new.jid,
            name: new.name,
            hostname: plan.hostname.clone(),
            identity: identity.clone(),
            reaper_fd,
            master: new.master,
            built: new.built,
            root_id,
            notes: Vec::new(),
            kernel,
        })
    }

    /// A carry the new generation does not use (PrisonDir was removed from the configuration):
    /// retires the previous generation's jail, as a change that needs a new jail would.
    pub fn retire_with(kernel: &K, carry: &str) -> Vec<String> {
        let mut notes = Vec::new();
        drop(adopt(kernel, carry, &mut notes));
        notes
    }

    /// Child, root, single-threaded (drop_privileges, before mod_unixd): joins the jail and
    /// becomes the httpd User. Any error ends the child: never an unjailed child.
    pub fn attach(&self) -> Result<(), Error> {
        let k = &self.kernel;
        // SAFETY: the child's inherited copy of the parent's reaper pipe. Only the parent may
        // hold it, or the reaper would wait for every child before noticing httpd's exit. The
        // child never uses it.
        unsafe { k.close_inherited(self.reaper_fd) };
        // jail_attach(2) refuses a process with an open directory (API "jail_attach(2)").
        k.close_directory_fds().map_err(Error::CloseDirectories)?;
        k.attach(self.jid).map_err(|source| Error::Attach {
            name: self.name.clone(),
            jid: self.jid,
            source,
        })?;
        Ok(k.switch_user(&self.identity)?)
    }

    /// Child, after every other drop_privileges hook: asserts the child is in the jail, at
    /// PrisonDir, and runs as the httpd User, not root. (`Backend::verify`.)
    pub fn verify_child(&self) -> Result<(), Error> {
        let k = &self.kernel;
        k.verify_user(&self.identity)?;
        if !k.jailed() {
            return Err(Error::NotJailed);
        }
        if k.file_id("/".as_ref()).map_err(Error::Root)? != self.root_id {
            return Err(Error::WrongRoot);
        }
        let found = k.hostname().map_err(Error::Hostname)?;
        if found != self.hostname {
            return Err(Error::WrongHostname {
                found,
                want: self.hostname.clone(),
            });
        }
        Ok(())
    }

    /// Parent: a restart clears this generation's configuration, and httpd unloads this
    /// module's code with it. Returns the carry for the next generation's `build` (plain text:
    /// the jid, name and create-only parameters of the live jail, this process's pid, and the
    /// number of the reaper's pipe, which stays open). `None` outside the parent that built the
    /// jail.
    pub fn release(self) -> Option<String> {
        if self.master != self.kernel.pid() {
            return None;
        }
        let carry = Carry {
            jid: self.jid,
            fd: self.reaper_fd,
            master: self.master,
            name: self.name,
            built: self.built,
        };
        Some(carry.render())
    }

    /// Parent: httpd exits. Clears `persist` now (the jail dies with the last child, at once if
    /// none is left) and removes the rules if it is already gone; closing the pipe then lets the
    /// reaper finish whatever remains. Returns what went wrong, for the error log.
    pub fn teardown(self) -> Vec<String> {
        let k = &self.kernel;
        let mut problems = Vec::new();
        if self.master != k.pid() {
            return problems;
        }
        let mut report = |what: &str, e: io::Error| {
            problems.push(format!("tearing down jail {}: {what}: {e}", self.name));
        };
        // SAFETY: in the parent that built the jail, `reaper_fd` is the open write end of the
        // reaper's pipe, owned by this `Jail` alone (it is only given up by `release`, which
        // consumes it).
        let reaper = match unsafe { k.adopt_pipe(self.reaper_fd) } {
            Ok(pipe) => Some(pipe),
            Err(e) => {
                report("taking back its reaper's pipe", e);
                None
            }
        };
        match k.clear_persist(self.jid) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => report("clearing persist", e),
            _ => {}
        }
        let gone = !matches!(k.lookup(self.jid), Ok((ref n, _)) if n == self.name.as_str());
        if gone && matches!(k.jid_by_name(self.name.as_str()), Ok(None)) {
            match k.rctl_remove(&rctl_all_filter(&self.name)) {
                Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => {
                    report("removing its rctl rules", e)
                }
                _ => {}
            }
        }
        drop(reaper);
        problems
    }

    /// What PrisonSecurity enforces in the children, for the error log.
    pub fn security_summary(&self) -> String {
        "the jail's allow.* parameters per PrisonSecurity".to_owned()
    }

    /// Parent, periodically: what the build noted (first call only). The reaper writes the
    /// memory report crossings itself (it polls the jail's memoryuse, see reaper.rs).
    pub fn monitor(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

/// The FreeBSD backend over the real kernel, as the glue calls it.
#[cfg(target_os = "freebsd")]
impl crate::jail::backend::Backend for Jail<sys::Real> {
    type Error = Error;

    /// `maxproc` counts httpd's children too (docs/freebsd.md): the ceiling is not used.
    fn build(
        prison: &Prison,
        identity: &Identity,
        _mpm: &MpmCeiling,
        carry: Option<&str>,
    ) -> Result<Self, Error> {
        Self::build_with(sys::Real, prison, identity, carry)
    }
    fn dry_run(prison: &Prison, _mpm: &MpmCeiling) -> Result<String, Error> {
        dry_run(prison)
    }
    /// Not done on FreeBSD (docs/freebsd.md, "A failed build at a restart"): `build` has
    /// retired the carried jail by then, so httpd stops as at a first start.
    fn carry_over(
        _prison: &Prison,
        _identity: &Identity,
        _mpm: &MpmCeiling,
        _carry: &str,
    ) -> Result<(Self, String), Error> {
        Err(Error::NoCarryOver)
    }
    fn retire(carry: &str) -> Vec<String> {
        Self::retire_with(&sys::Real, carry)
    }
    fn attach(&self) -> Result<(), Error> {
        Jail::attach(self)
    }
    fn verify(&self) -> Result<(), Error> {
        self.verify_child()
    }
    fn security_summary(&self) -> String {
        Jail::security_summary(self)
    }
    fn monitor(&mut self) -> Vec<String> {
        Jail::monitor(self)
    }
    fn release(self) -> Option<String> {
        Jail::release(self)
    }
    fn teardown(self) -> Vec<String> {
        Jail::teardown(self)
    }
}

/// Under `apachectl -t` only: what `build` checks before it creates anything (the jail's plan,
/// PrisonDir). A jail is not created for a dry run.
pub fn dry_run(prison: &Prison) -> Result<String, Error> {
    let plan = JailPlan::new(prison).map_err(|source| Error::Plan {
        prison: prison.name.to_string(),
        source,
    })?;
    std::fs::metadata(&prison.dir).map_err(|source| Error::PrisonDir {
        prison: prison.name.to_string(),
        path: plan.path.clone(),
        source,
    })?;
    Ok("the jail's plan checked (no jail is created for a dry run)".to_owned())
}

/// Reads the previous generation's carry and takes back its reaper's pipe, if it is verifiably
/// this process's. Anything doubtful is noted and the pipe left alone: the old jail then keeps
/// its reaper until httpd exits, a leak, never a wrong adoption.
fn adopt<K: Kernel>(kernel: &K, text: &str, notes: &mut Vec<String>) -> Option<Owned<K>> {
    let carry = match Carry::parse(text) {
        Ok(carry) => carry,
        Err(e) => {
            notes.push(format!(
                "ignoring the previous generation's record {text:?}: {e}"
            ));
            return None;
        }
    };
    let me = kernel.pid();
    if carry.master != me {
        notes.push(format!(
            "jail {} (jid {}) was made by pid {}, not this httpd (pid {me}); it is not adopted",
            carry.name, carry.jid, carry.master
        ));
        return None;
    }
    // SAFETY: this very process (master == our pid) wrote the carry in `release`, which gave
    // the descriptor up with `pipe_into_raw`; only this call takes it back, once.
    match unsafe { kernel.adopt_pipe(carry.fd) } {
        Ok(reaper) => Some(Owned {
            master: carry.master,
            jid: carry.jid,
            name: carry.name,
            built: carry.built,
            reaper,
        }),
        Err(e) => {
            notes.push(format!(
                "the reaper pipe of jail {} (descriptor {}) is not usable, the jail is not \
                 adopted: {e}",
                carry.name, carry.fd
            ));
            None
        }
    }
}

/// The configuration allows reuse and the kernel still has our jail as we left it.
fn reusable<K: Kernel>(
    kernel: &K,
    old: &Owned<K>,
    plan: &JailPlan,
    notes: &mut Vec<String>,
) -> bool {
    if let Reuse::No(why) = reuse(&old.built, plan) {
        notes.push(format!(
            "jail {} is not reused ({why}): a new jail is made, the old one dies with its last \
             old child",
            old.name
        ));
        return false;
    }
    match kernel.lookup(old.jid) {
        Ok((name, path)) if name == old.name.as_str() && path == old.built.path => true,
        found => {
            notes.push(format!(
                "jail {} (jid {}) is no longer as this httpd left it ({found:?}); a new jail is \
                 made",
                old.name, old.jid
            ));
            false
        }
    }
}

fn update<K: Kernel>(kernel: &K, old: &mut Owned<K>, plan: &JailPlan) -> Result<(), Error> {
    let mut params = vec![plan::Param {
        name: "jid",
        value: Some(old.jid.to_string()),
    }];
    params.extend(plan.update_params());
    kernel
        .set_params(&params, SetMode::Update)
        .map_err(|source| Error::Update {
            name: old.name.clone(),
            jid: old.jid,
            source,
        })?;
    apply_limits(kernel, old.jid, &old.name, plan)?;
    kernel
        .send_report(&old.reaper, plan.memory.report)
        .map_err(|source| Error::Report {
            name: old.name.clone(),
            source,
        })?;
    old.built = Built::from(plan);
    Ok(())
}

fn create<K: Kernel>(
    kernel: &K,
    plan: &JailPlan,
    retiring: Option<&JailName>,
    notes: &mut Vec<String>,
) -> Result<Owned<K>, Error> {
    let name = free_name(kernel, plan, retiring, notes)?;
    // Rules are keyed by name and outlive jails (API "rctl(8)"): whatever an
    // earlier jail of this name left must not apply to this one.
    match kernel.rctl_remove(&rctl_all_filter(&name)) {
        Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => {
            return Err(Error::StaleRules {
                name,
                path: plan.path.clone(),
                source: e,
            })
        }
        _ => {}
    }
    let jid = kernel
        .set_params(&plan.create_params(&name), SetMode::Create)
        .map_err(|e| Error::Create {
            name: name.clone(),
            path: plan.path.clone(),
            source: explain_create(kernel, e),
        })?;
    let master = kernel.pid();
    // From here the reaper owns the jail: if anything below fails, dropping it clears persist
    // (the jail has no process yet, so it dies at once) and removes the rules.
    let reaper = match kernel.spawn_reaper(&Job::new(jid, &name, plan.memory.report, master)) {
        Ok(reaper) => reaper,
        Err(source) => {
            let _ = kernel.clear_persist(jid);
            return Err(Error::Reaper { name, source });
        }
    };
    apply_limits(kernel, jid, &name, plan)?;
    Ok(Owned {
        master,
        jid,
        name,
        built: Built::from(plan),
        reaper,
    })
}

/// The first generation name no live jail holds. The PrisonName itself unless a jail of that
/// name is alive: our previous generation (its old children still serve), or one we did not
/// make, which is never adopted.
fn free_name<K: Kernel>(
    kernel: &K,
    plan: &JailPlan,
    retiring: Option<&JailName>,
    notes: &mut Vec<String>,
) -> Result<JailName, Error> {
    let fail = |source: NameError| Error::Name {
        prison: plan.base.to_string(),
        source,
    };
    let candidates = JailName::candidates(&plan.base).map_err(|e| fail(e.into()))?;
    for name in candidates {
        match kernel.jid_by_name(name.as_str()) {
            Ok(None) => return Ok(name),
            Ok(Some(jid)) if Some(&name) != retiring && name.as_str() == plan.base.as_str() => {
                notes.push(format!(
                    "a jail named {name} (jid {jid}) exists and was not made by this httpd; it \
                     is left alone and the prison uses another name. Remove it (jail -r {name}) \
                     if it is a leftover."
                ));
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(fail(NameError::Lookup(e))),
        }
    }
    Err(fail(NameError::AllTaken(plan.base.to_string())))
}

/// jail_set's EPERM from inside a jail is about the parent jail, not about root.
fn explain_create<K: Kernel>(kernel: &K, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::EPERM) && kernel.jailed() {
        return io::Error::new(
            e.kind(),
            format!(
                "{e}; httpd itself runs in a jail (e.g. an rc service jail, apache24_svcj=YES), \
                 whose children.max is 0 or whose permissions are narrower than the prison's; \
                 run httpd on the host (docs/freebsd-api.md \"jail_set(2) errors\")"
            ),
        );
    }
    e
}

/// Restricts the jail's CPUs and sets its rctl rules (both survive a reuse).
fn apply_limits<K: Kernel>(
    kernel: &K,
    jid: Jid,
    name: &JailName,
    plan: &JailPlan,
) -> Result<(), Error> {
    if let Some(cpus) = &plan.cpus {
        let mask = cpuset_mask(cpus, kernel.cpusetsize()).map_err(|source| Error::CpuMask {
            name: name.clone(),
            cpus: cpus.clone(),
            source,
        })?;
        kernel
            .set_jail_cpus(jid, &mask)
            .map_err(|source| Error::Cpuset {
                name: name.clone(),
                cpus: cpus.clone(),
                source,
            })?;
    }
    for rule in plan.rctl_rules(name) {
        let result = match (&rule.rule, rule.replace) {
            // No such limit configured: drop one a previous generation set.
            (None, _) => match kernel.rctl_remove(&rule.filter) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
                other => other,
            },
            (Some(text), Replace::ByAdding) => kernel.rctl_add(text),
            (Some(text), Replace::RemoveFirst) => kernel
                .rctl_remove(&rule.filter)
                .and_then(|()| kernel.rctl_add(text)),
        };
        result.map_err(|e| Error::Rctl {
            rule: rule.rule.clone().unwrap_or_else(|| rule.filter.clone()),
            source: explain_rctl(kernel, e),
        })?;
    }
    Ok(())
}

/// rctl answers ENOSYS when RACCT is off or missing; say which, as rctl(8) does
/// (API "rctl(8)").
fn explain_rctl<K: Kernel>(kernel: &K, e: io::Error) -> io::Error {
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return e;
    }
    let why = match kernel.racct() {
        kernel::Racct::Absent => {
            "this kernel has no RACCT/RCTL support (options RACCT and RCTL); remove \
             PrisonMemory and PrisonProcesses or use a kernel with them"
        }
        _ => {
            "RACCT/RCTL is disabled: add kern.racct.enable=1 to /boot/loader.conf and reboot \
             (it is a boot-time tunable)"
        }
    };
    io::Error::new(e.kind(), format!("{why} ({e})"))
}

#[cfg(test)]
mod tests {
    /// The `API "x"` citations of a source file; comments wrap, so each line is joined to the
    /// next without its comment marker.
    fn citations(source: &str) -> Vec<String> {
        let text = source
            .lines()
            .map(|l| l.trim_start().trim_start_matches(['/', '!']).trim())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cited = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("API \"") {
            rest = &rest[at + 5..];
            let end = rest.find('"').expect("a closing quote");
            cited.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
        cited
    }

    /// Every `API "x"` the backend cites is a section of docs/freebsd-api.md.
    #[test]
    fn every_cited_man_page_section_is_in_the_docs() {
        let doc = include_str!("../../../docs/freebsd-api.md");
        let sections: Vec<&str> = doc.lines().filter_map(|l| l.strip_prefix("## ")).collect();
        let sources = [
            include_str!("mod.rs"),
            include_str!("error.rs"),
            include_str!("kernel.rs"),
            include_str!("plan.rs"),
            include_str!("reaper.rs"),
            include_str!("sys.rs"),
        ];
        let cited: Vec<String> = sources
            .into_iter()
            .flat_map(citations)
            // The explanation of the notation itself.
            .filter(|c| c != "x")
            .collect();
        assert!(cited.len() > 30, "{cited:?}");
        for c in &cited {
            assert!(
                sections.contains(&c.as_str()),
                "API {c:?} is not a section of docs/freebsd-api.md"
            );
        }
        // Negative control: a wrapped citation is read whole, and a made-up one is not found.
        let made_up = citations("// see (API \"jail_frobnicate(2)\n// flags\")");
        assert_eq!(made_up, ["jail_frobnicate(2) flags"]);
        assert!(!sections.contains(&made_up[0].as_str()));
    }
}
