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
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::MetadataExt;

    use libc::c_int;

    use super::plan::{
        cpuset_mask, rctl_all_filter, reuse, Built, Carry, JailName, JailPlan, Replace, Reuse,
    };
    use super::reaper::{self, Reaper};
    use super::sys;
    use crate::config::Prison;
    use crate::jail::{Identity, SetupError};

    /// The jail of the generation being built, with the parent's end of its reaper's pipe:
    /// dropping it (an error part-way, or a predecessor being retired) closes the pipe, and
    /// the reaper clears `persist`.
    #[derive(Debug)]
    struct Owned {
        master: u32,
        jid: c_int,
        name: JailName,
        built: Built,
        reaper: Reaper,
    }

    /// What the children of one generation need to join the prison, and what the parent needs
    /// to hand the jail to the next generation (`release`) or tear it down (`teardown`).
    #[derive(Debug)]
    pub struct Prepared {
        jid: c_int,
        name: JailName,
        hostname: String,
        identity: Identity,
        /// The parent's end of the reaper's pipe: each child closes its copy. Owned by the
        /// parent (`master`) and given up explicitly: `release` leaves it open for the next
        /// generation, `teardown` closes it. A plain number, so dropping a `Prepared` in a
        /// child (which closed its copy in `attach`) never closes anything.
        reaper_fd: RawFd,
        /// The httpd parent that built the jail.
        master: u32,
        /// The jail's create-only parameters and cpuset, for the next generation's reuse.
        built: Built,
        /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
        root_id: (u64, u64),
    }

    impl Prepared {
        /// Parent, root (post_config, pass 2 and every restart): creates the jail, or reuses
        /// the live one at a graceful restart, then sets its cpuset and rctl rules. `carry` is
        /// what the previous generation's `release` returned (`None` at first start): the live
        /// jail is reused when it is verifiably ours (made by this very process, and the kernel
        /// still has it under the carried jid, name and path) and its create-only parameters are
        /// unchanged; otherwise a new jail is made and the old one retired (its reaper's pipe
        /// closed: `persist` cleared, it dies with its last old child).
        ///
        /// Any failure stops httpd with the kernel's own message; nothing is left half-done (a
        /// new jail's reaper clears it, and a carried jail is retired).
        pub fn build(
            prison: &Prison,
            identity: &Identity,
            carry: Option<&str>,
        ) -> Result<Self, SetupError> {
            let base = &prison.name;
            let step = |what: &str| format!("building prison {base}: {what}");
            // Taken first, so that whatever fails below, a carried pipe is closed (its jail
            // retired) rather than left open until httpd exits.
            let previous = carry.and_then(adopt);
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

            let (new, retiring) = match previous {
                Some(mut old) if reusable(&old, &plan) => {
                    // On error `old` is dropped: httpd stops, and its reaper clears it.
                    update(&mut old, &plan)?;
                    (old, None)
                }
                old => (create(&plan, old.as_ref().map(|o| &o.name))?, old),
            };
            // Closing the old reaper's pipe retires the old jail: persist cleared, it dies
            // with the last old child, then its rules go. Never jail_remove: that would
            // SIGKILL old children in the middle of a request (API §5).
            drop(retiring);
            Ok(Self {
                jid: new.jid,
                name: new.name,
                hostname: plan.hostname.clone(),
                identity: identity.clone(),
                reaper_fd: new.reaper.into_raw_fd(),
                master: new.master,
                built: new.built,
                root_id: (meta.dev(), meta.ino()),
            })
        }

        /// Parent, root, under `apachectl -t` only: what `build` checks before it creates
        /// anything (the jail's plan, PrisonDir). A jail is not created for a dry run.
        pub fn dry_run(prison: &Prison) -> Result<String, SetupError> {
            let step = |what: &str| format!("building prison {}: {what}", prison.name);
            let plan = JailPlan::new(prison)
                .map_err(|e| SetupError::check(step("planning the jail"), e.to_string()))?;
            std::fs::metadata(&prison.dir).map_err(|e| {
                SetupError::new(step(&format!("reading PrisonDir {}", plan.path)), e)
            })?;
            Ok("the jail's plan checked (no jail is created for a dry run)".to_owned())
        }

        /// A carry the new generation does not use (PrisonDir was removed from the
        /// configuration): retires the previous generation's jail, as a change that needs a new
        /// jail would.
        pub fn retire(carry: &str) {
            drop(adopt(carry));
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

        /// Parent: a restart clears this generation's configuration, and httpd unloads this
        /// module's code with it. Returns the carry for the next generation's `build` (plain
        /// text: the jid, name and create-only parameters of the live jail, this process's
        /// pid, and the number of the reaper's pipe, which stays open). `None` outside the
        /// parent that built the jail.
        pub fn release(self) -> Option<String> {
            if self.master != std::process::id() {
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

        /// Parent: httpd exits. Clears `persist` now (the jail dies with the last child, at
        /// once if none is left) and removes the rules if it is already gone; closing the
        /// pipe then lets the reaper finish whatever remains. Returns what went wrong, for
        /// the error log.
        pub fn teardown(self) -> Vec<String> {
            let mut problems = Vec::new();
            if self.master != std::process::id() {
                return problems;
            }
            // SAFETY: in the parent that built the jail, `reaper_fd` is the open write end of
            // the reaper's pipe, owned by this `Prepared` alone (it is only given up by
            // `release`, which consumes it).
            let reaper = unsafe { OwnedFd::from_raw_fd(self.reaper_fd) };
            let mut report = |what: &str, e: io::Error| {
                problems.push(format!("tearing down jail {}: {what}: {e}", self.name));
            };
            match sys::clear_persist(self.jid) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => report("clearing persist", e),
                _ => {}
            }
            let gone = !matches!(sys::lookup(self.jid), Ok((ref n, _)) if n == self.name.as_str());
            if gone && matches!(sys::jid_by_name(self.name.as_str()), Ok(None)) {
                match sys::rctl_remove(&rctl_all_filter(&self.name)) {
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

        /// Parent, periodically: the jail's resource events for the error log. The reaper
        /// writes the memory report crossings itself (it polls the jail's memoryuse, see
        /// reaper.rs), so none come here.
        pub fn monitor(&mut self) -> Vec<String> {
            Vec::new()
        }
    }

    /// Reads the previous generation's carry and takes back its reaper's pipe, if it is
    /// verifiably this process's. Anything doubtful is logged and the pipe left alone: the old
    /// jail then keeps its reaper until httpd exits, a leak, never a wrong adoption.
    fn adopt(text: &str) -> Option<Owned> {
        let carry = match Carry::parse(text) {
            Ok(carry) => carry,
            Err(e) => {
                eprintln!("mod_prison: ignoring the previous generation's record {text:?}: {e}");
                return None;
            }
        };
        let me = std::process::id();
        if carry.master != me {
            eprintln!(
                "mod_prison: jail {} (jid {}) was made by pid {}, not this httpd (pid {me}); \
                 it is not adopted",
                carry.name, carry.jid, carry.master
            );
            return None;
        }
        // SAFETY: this very process (master == our pid) wrote the carry in `release`, which
        // gave the descriptor up with `into_raw_fd`; only this call takes it back, once.
        match unsafe { Reaper::adopt(carry.fd) } {
            Ok(reaper) => Some(Owned {
                master: carry.master,
                jid: carry.jid,
                name: carry.name,
                built: carry.built,
                reaper,
            }),
            Err(e) => {
                eprintln!(
                    "mod_prison: the reaper pipe of jail {} (descriptor {}) is not usable, the \
                     jail is not adopted: {e}",
                    carry.name, carry.fd
                );
                None
            }
        }
    }

    /// The configuration allows reuse and the kernel still has our jail as we left it.
    fn reusable(old: &Owned, plan: &JailPlan) -> bool {
        if let Reuse::No(why) = reuse(&old.built, plan) {
            eprintln!(
                "mod_prison: jail {} is not reused ({why}): a new jail is made, the old one \
                 dies with its last old child",
                old.name
            );
            return false;
        }
        match sys::lookup(old.jid) {
            Ok((name, path)) if name == old.name.as_str() && path == old.built.path => true,
            found => {
                eprintln!(
                    "mod_prison: jail {} (jid {}) is no longer as this httpd left it ({found:?}); \
                     a new jail is made",
                    old.name, old.jid
                );
                false
            }
        }
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
