//! FreeBSD backend: the prison is a persistent jail made with libjail, its cpuset restricted
//! and its rctl rules set, and a reaper that makes it die with httpd. Each child joins it with
//! `jail_attach` and becomes the httpd User.
//!
//! - `plan`: the jail as data (parameters, rctl rules, cpuset mask, names). Pure, compiled and
//!   tested on every platform.
//! - `sys`: libjail, jail_set/jail_get/jail_attach, cpuset and rctl. FreeBSD only.
//! - `reaper`: the process that clears `persist` and removes the rules when httpd goes.
//!
//! "API §n" is a section of `../shared/research/freebsd-api.md`.
//!
//! The original C module's FreeBSD bugs (`../shared/research/apache-and-original.md` §1) and
//! what stops each here:
//! - not root in post_config returned errno, usually 0 (OK): `build` returns an error;
//! - jail creation, security, cpuset and rctl failures were logged and startup went on (or
//!   returned a stale 0): every step is `?`, and a new jail's reaper undoes a half-built one;
//! - `chdir(PrisonDir)` in the parent: the parent never changes directory;
//! - `sizeof(mask)` of a pointer, `8-10` stored as {8,10,10}, `> MAXCPU`: `plan::cpuset_mask`
//!   and its tests;
//! - the jail reused by name alone, and "back to None undoes nothing": `OWNED` and
//!   `plan::reuse` (tested);
//! - EEXIST at restart: a live jail is reused or a new generation name is chosen, never
//!   created twice under one name;
//! - rctl rules never removed: removed for a new jail's name and when a jail goes (reaper,
//!   `teardown`);
//! - the persistence helper returning into httpd, sleeping 10 ms, or being killed by httpd's
//!   `killpg`: see `reaper`;
//! - `vm.overcommit` required for PrisonMemory: not needed, rctl's `memoryuse` does not
//!   depend on it;
//! - a jail name with a `.` (hierarchical): `plan::JailName` refuses it (tested).

pub mod plan;

#[cfg(target_os = "freebsd")]
mod reaper;
#[cfg(target_os = "freebsd")]
mod sys;

#[cfg(target_os = "freebsd")]
pub use backend::Prepared;

#[cfg(target_os = "freebsd")]
mod backend {
    use std::io;
    use std::os::fd::RawFd;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Mutex, PoisonError};

    use libc::c_int;

    use super::plan::{
        cpuset_mask, rctl_all_filter, reuse, Built, JailName, JailPlan, Replace, Reuse,
    };
    use super::reaper::{self, Reaper};
    use super::sys;
    use crate::config::Prison;
    use crate::jail::{Identity, SetupError};

    /// The jail this httpd made, kept from one generation to the next so that a graceful
    /// restart can reuse it. A jail is ours only if it is recorded here by this very process
    /// and the kernel still shows it under the recorded jid, name and path: a jail found by
    /// name alone is never adopted (the original's reuse by name let any jail called like the
    /// prison be taken over).
    ///
    /// If httpd reloads the module and this static starts empty, the live jail is not
    /// recognised: a new one is made under the next free generation name, and the old one
    /// keeps its reaper, which clears it when httpd exits.
    static OWNED: Mutex<Option<Owned>> = Mutex::new(None);

    #[derive(Debug)]
    struct Owned {
        master: u32,
        jid: c_int,
        name: JailName,
        built: Built,
        reaper: Reaper,
    }

    /// What the children of one generation need to join the prison.
    #[derive(Debug)]
    pub struct Prepared {
        jid: c_int,
        name: JailName,
        hostname: String,
        identity: Identity,
        /// The parent's end of the reaper's pipe: each child closes its copy.
        reaper_fd: RawFd,
        /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
        root_id: (u64, u64),
    }

    impl Prepared {
        /// Parent, root (post_config, pass 2 and every restart): creates the jail, or reuses
        /// the live one at a graceful restart, then sets its cpuset and rctl rules. Any failure
        /// stops httpd with the kernel's own message; nothing is left half-done (a new jail's
        /// reaper clears it).
        pub fn build(prison: &Prison, identity: &Identity) -> Result<Self, SetupError> {
            let base = &prison.name;
            let step = |what: &str| format!("building prison {base}: {what}");
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                // The original logged this and returned errno (usually 0: OK), so children
                // later dereferenced a missing jail. Here it is an error.
                return Err(SetupError::check(
                    step("checking privileges"),
                    "httpd must be started as root to create a jail",
                ));
            }
            let plan = JailPlan::new(prison)
                .map_err(|e| SetupError::check(step("planning the jail"), e.to_string()))?;
            let meta = std::fs::metadata(&prison.dir).map_err(|e| {
                SetupError::new(step(&format!("reading PrisonDir {}", plan.path)), e)
            })?;

            let mut owned = OWNED.lock().unwrap_or_else(PoisonError::into_inner);
            let previous = owned.take().filter(|o| o.master == std::process::id());
            let (new, retiring) = match previous {
                Some(mut old) if reusable(&old, &plan) => match update(&mut old, &plan) {
                    Ok(()) => (old, None),
                    Err(e) => {
                        // Still ours and still watched by its reaper.
                        *owned = Some(old);
                        return Err(e);
                    }
                },
                old => match create(&plan, old.as_ref().map(|o| &o.name)) {
                    Ok(new) => (new, old),
                    Err(e) => {
                        *owned = old;
                        return Err(e);
                    }
                },
            };
            // Closing the old reaper's pipe retires the old jail: persist cleared, it dies
            // with the last old child, then its rules go. Never jail_remove: that would
            // SIGKILL old children in the middle of a request (API §5).
            drop(retiring);
            let prepared = Self {
                jid: new.jid,
                name: new.name.clone(),
                hostname: plan.hostname.clone(),
                identity: identity.clone(),
                reaper_fd: new.reaper.raw_fd(),
                root_id: (meta.dev(), meta.ino()),
            };
            *owned = Some(new);
            Ok(prepared)
        }

        /// Child, root, single-threaded (drop_privileges, before mod_unixd): joins the jail
        /// and becomes the httpd User. Any error ends the child: never an unjailed child.
        pub fn attach(&self) -> Result<(), SetupError> {
            // SAFETY: the child's inherited copy of the parent's reaper pipe. Only the parent
            // may hold it, or the reaper would wait for every child before noticing httpd's
            // exit. The child never uses it.
            unsafe { libc::close(self.reaper_fd) };
            sys::close_directory_fds(&[]).map_err(|e| {
                SetupError::new("closing directory descriptors before joining the jail", e)
            })?;
            sys::attach(self.jid).map_err(|e| {
                SetupError::new(format!("joining jail {} (jid {})", self.name, self.jid), e)
            })?;
            self.identity.switch()
        }

        /// Child, after every other drop_privileges hook: asserts the child is in the jail,
        /// at PrisonDir, and runs as the httpd User, not root.
        pub fn verify(&self) -> Result<(), SetupError> {
            self.identity.verify_current()?;
            if !sys::jailed() {
                return Err(SetupError::check(
                    "checking the child's jail",
                    "security.jail.jailed is 0: the child is not in a jail",
                ));
            }
            let root = std::fs::metadata("/")
                .map_err(|e| SetupError::new("checking the child's root", e))?;
            if (root.dev(), root.ino()) != self.root_id {
                return Err(SetupError::check(
                    "checking the child's root",
                    "/ is not PrisonDir: the child is not in the prison",
                ));
            }
            let host =
                sys::hostname().map_err(|e| SetupError::new("reading the child's hostname", e))?;
            if host != self.hostname {
                return Err(SetupError::check(
                    "checking the child's jail",
                    format!("hostname is {host:?}, not the prison's {:?}", self.hostname),
                ));
            }
            Ok(())
        }

        /// Parent: a restart clears this generation's configuration. The jail and its reaper
        /// stay recorded in `OWNED` for the next `build`, which reuses or retires them.
        pub fn release(self) {}

        /// Parent: httpd exits. Clears `persist` now (the jail dies with the last child, at
        /// once if none is left) and removes the rules if it is already gone; closing the
        /// pipe then lets the reaper finish whatever remains. Returns what went wrong, for
        /// the error log.
        pub fn teardown(self) -> Vec<String> {
            let mut problems = Vec::new();
            let mut owned = OWNED.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(own) = owned.take() else {
                return problems;
            };
            if own.master != std::process::id() || own.jid != self.jid {
                *owned = Some(own);
                return problems;
            }
            let mut report = |what: &str, e: io::Error| {
                problems.push(format!("tearing down jail {}: {what}: {e}", own.name));
            };
            match sys::clear_persist(own.jid) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => report("clearing persist", e),
                _ => {}
            }
            let gone = !matches!(sys::lookup(own.jid), Ok((ref n, _)) if n == own.name.as_str());
            if gone && matches!(sys::jid_by_name(own.name.as_str()), Ok(None)) {
                match sys::rctl_remove(&rctl_all_filter(&own.name)) {
                    Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => {
                        report("removing its rctl rules", e)
                    }
                    _ => {}
                }
            }
            drop(own);
            problems
        }

        /// What PrisonSecurity enforces in the children, for the error log.
        pub fn security_summary(&self) -> String {
            "the jail's allow.* parameters per PrisonSecurity".to_owned()
        }

        /// Parent, periodically: the jail's resource events for the error log. The reaper
        /// writes the memory report crossings itself (it polls the jail's memoryuse, see
        /// reaper.rs), so none come here.
        pub fn monitor(&mut self) -> Vec<String> {
            Vec::new()
        }
    }

    /// The configuration allows reuse and the kernel still has our jail as we left it.
    fn reusable(old: &Owned, plan: &JailPlan) -> bool {
        if reuse(&old.built, plan) != Reuse::Yes {
            return false;
        }
        matches!(sys::lookup(old.jid), Ok((name, path))
            if name == old.name.as_str() && path == old.built.path)
    }

    fn update(old: &mut Owned, plan: &JailPlan) -> Result<(), SetupError> {
        let step = |what: &str| format!("reusing jail {} (jid {}): {what}", old.name, old.jid);
        let mut params = vec![super::plan::Param {
            name: "jid",
            value: Some(old.jid.to_string()),
        }];
        params.extend(plan.update_params());
        sys::set_params(&params, libc::JAIL_UPDATE)
            .map_err(|e| SetupError::new(step("updating its parameters"), e))?;
        apply_limits(old.jid, &old.name, plan)?;
        old.reaper.set_report(plan.memory.report)?;
        old.built = Built::from(plan);
        Ok(())
    }

    fn create(plan: &JailPlan, retiring: Option<&JailName>) -> Result<Owned, SetupError> {
        let name = free_name(plan, retiring)?;
        let step = |what: &str| format!("creating jail {name} at {}: {what}", plan.path);
        // Rules are keyed by name and outlive jails (API §4): whatever an earlier jail of this
        // name left must not apply to this one.
        match sys::rctl_remove(&rctl_all_filter(&name)) {
            Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => {
                return Err(SetupError::new(step("removing stale rctl rules"), e))
            }
            _ => {}
        }
        let jid = sys::set_params(&plan.create_params(&name), libc::JAIL_CREATE)
            .map_err(|e| SetupError::new(step("jail_set"), explain_create(e)))?;
        // From here the reaper owns the jail: if anything below fails, dropping it clears
        // persist (the jail has no process yet, so it dies at once) and removes the rules.
        let reaper = match reaper::spawn(jid, &name, plan.memory.report) {
            Ok(reaper) => reaper,
            Err(e) => {
                let _ = sys::clear_persist(jid);
                return Err(e);
            }
        };
        apply_limits(jid, &name, plan)?;
        Ok(Owned {
            master: std::process::id(),
            jid,
            name,
            built: Built::from(plan),
            reaper,
        })
    }

    /// The first generation name no live jail holds. The PrisonName itself unless a jail of
    /// that name is alive: our previous generation (its old children still serve), or one we
    /// did not make, which is never adopted.
    fn free_name(plan: &JailPlan, retiring: Option<&JailName>) -> Result<JailName, SetupError> {
        let step = || format!("choosing a jail name for prison {}", plan.base);
        let candidates = JailName::candidates(&plan.base)
            .map_err(|e| SetupError::check(step(), e.to_string()))?;
        for name in candidates {
            match sys::jid_by_name(name.as_str()) {
                Ok(None) => return Ok(name),
                Ok(Some(jid)) if Some(&name) != retiring && name.as_str() == plan.base.as_str() => {
                    eprintln!(
                        "mod_prison: a jail named {name} (jid {jid}) exists and was not made by \
                         this httpd; it is left alone and the prison uses another name. Remove \
                         it (jail -r {name}) if it is a leftover."
                    );
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(SetupError::new(step(), e)),
            }
        }
        Err(SetupError::check(
            step(),
            format!(
                "{} and all its generation names are taken by live jails",
                plan.base
            ),
        ))
    }

    /// jail_set's EPERM from inside a jail is about the parent jail, not about root.
    fn explain_create(e: io::Error) -> io::Error {
        if e.raw_os_error() == Some(libc::EPERM) && sys::jailed() {
            return io::Error::new(
                e.kind(),
                format!(
                    "{e}; httpd itself runs in a jail (e.g. an rc service jail, \
                     apache24_svcj=YES), whose children.max is 0 or whose permissions are \
                     narrower than the prison's; run httpd on the host (API §2.2)"
                ),
            );
        }
        e
    }

    /// Restricts the jail's CPUs and sets its rctl rules (both survive a reuse).
    fn apply_limits(jid: c_int, name: &JailName, plan: &JailPlan) -> Result<(), SetupError> {
        if let Some(cpus) = &plan.cpus {
            let step = || format!("restricting jail {name} to CPUs {cpus}");
            let mask = cpuset_mask(cpus, sys::cpusetsize())
                .map_err(|e| SetupError::check(step(), e.to_string()))?;
            sys::set_jail_cpus(jid, &mask).map_err(|e| SetupError::new(step(), e))?;
        }
        for rule in plan.rctl_rules(name) {
            let result = match (&rule.rule, rule.replace) {
                // No such limit configured: drop one a previous generation set.
                (None, _) => match sys::rctl_remove(&rule.filter) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
                    other => other,
                },
                (Some(text), Replace::ByAdding) => sys::rctl_add(text),
                (Some(text), Replace::RemoveFirst) => {
                    sys::rctl_remove(&rule.filter).and_then(|()| sys::rctl_add(text))
                }
            };
            result.map_err(|e| {
                let what = rule.rule.as_deref().unwrap_or(&rule.filter);
                SetupError::new(format!("setting rctl rule {what}"), explain_rctl(e))
            })?;
        }
        Ok(())
    }

    /// rctl answers ENOSYS when RACCT is off or missing; say which, as rctl(8) does (API §4).
    fn explain_rctl(e: io::Error) -> io::Error {
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return e;
        }
        let why = match sys::racct() {
            sys::Racct::Absent => {
                "this kernel has no RACCT/RCTL support (options RACCT and RCTL); \
                 remove PrisonMemory and PrisonProcesses or use a kernel with them"
            }
            _ => {
                "RACCT/RCTL is disabled: add kern.racct.enable=1 to /boot/loader.conf \
                 and reboot (it is a boot-time tunable)"
            }
        };
        io::Error::new(e.kind(), format!("{why} ({e})"))
    }
}
