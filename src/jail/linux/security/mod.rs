//! PrisonSecurity on Linux: what a prisoner may not do, even with arbitrary code execution and
//! even as uid 0 inside the prison.
//!
//! - `None`: nothing beyond the namespaces and PrisonDir.
//! - `ALL`: capabilities gone for good ([`caps`]), no_new_privs, Landlock ([`landlock`]) and a
//!   seccomp denylist ([`seccomp`]).
//! - `IPC`: as ALL, but SysV IPC allowed (inside the prison's own IPC namespace).
//!
//! Described and compiled once in the parent ([`Restrictions::build`]); each child applies it
//! in two steps around the user switch, before any thread exists.

pub mod caps;
pub mod landlock;
pub mod seccomp;

use std::path::Path;

use seccompiler::BpfProgram;

use crate::config::Security;
use crate::jail::SetupError;

/// A level's restrictions, ready to apply.
#[derive(Debug)]
pub struct Restrictions {
    level: Security,
    /// Installed in this order; empty for None.
    filters: Vec<BpfProgram>,
    /// `None` for the level None.
    landlock: Option<landlock::Ruleset>,
}

impl Restrictions {
    /// Parent, root: compiles the seccomp filters and prepares the Landlock ruleset.
    pub fn build(level: Security, prison_dir: &Path) -> Result<Self, SetupError> {
        let filters = seccomp::compile(level).map_err(|e| {
            SetupError::check(format!("compiling the seccomp filter of {level}"), e)
        })?;
        let landlock = match level {
            Security::None => None,
            Security::All | Security::Ipc => Some(landlock::Ruleset::build(prison_dir)?),
        };
        Ok(Self {
            level,
            filters,
            landlock,
        })
    }

    fn enforced(&self) -> bool {
        self.level != Security::None
    }

    /// Child, root, in the prison, before the user switch: the capability steps that need
    /// CAP_SETPCAP.
    pub fn before_user_switch(&self) -> Result<(), SetupError> {
        if !self.enforced() {
            return Ok(());
        }
        caps::drop_before_switch()
    }

    /// Child, as the httpd User, single-threaded. The order matters:
    pub fn after_user_switch(&self) -> Result<(), SetupError> {
        if !self.enforced() {
            return Ok(());
        }
        // Capabilities first: NO_SETUID_FIXUP left them after setuid.
        caps::clear_after_switch()?;
        // no_new_privs before Landlock and seccomp, which need it unprivileged; it also makes
        // every setuid binary (suEXEC) powerless.
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if ret != 0 {
            return Err(SetupError::last_os_error("setting no_new_privs"));
        }
        // Landlock before seccomp, so the filter never has to allow Landlock's syscalls, and
        // while single-threaded: restrict_self applies to the calling thread only.
        if let Some(ruleset) = &self.landlock {
            ruleset.restrict()?;
        }
        // seccomp last, so no earlier step is constrained by it. TSYNC as a safety net.
        for (i, filter) in self.filters.iter().enumerate() {
            seccompiler::apply_filter_all_threads(filter).map_err(|e| {
                SetupError::check(
                    format!("installing seccomp filter {i} of {}", self.level),
                    e.to_string(),
                )
            })?;
        }
        Ok(())
    }

    /// Child, after every drop_privileges hook: asserts the restrictions are in force.
    pub fn verify(&self) -> Result<(), SetupError> {
        if !self.enforced() {
            return Ok(());
        }
        caps::verify()?;
        let get = |option, what: &str| {
            // SAFETY: the PR_GET_* options used here take no arguments.
            let value = unsafe { libc::prctl(option, 0, 0, 0, 0) };
            if value < 0 {
                Err(SetupError::last_os_error(format!("reading {what}")))
            } else {
                Ok(value)
            }
        };
        let nnp = get(libc::PR_GET_NO_NEW_PRIVS, "no_new_privs")?;
        let mode = get(libc::PR_GET_SECCOMP, "the seccomp mode")?;
        if nnp != 1 || mode != 2 {
            return Err(SetupError::check(
                format!("checking PrisonSecurity {}", self.level),
                format!("no_new_privs is {nnp} and seccomp mode {mode}, expected 1 and 2"),
            ));
        }
        Ok(())
    }

    /// One line for the error log: what children get on this kernel.
    pub fn summary(&self) -> String {
        match &self.landlock {
            None => format!("PrisonSecurity {}: no restrictions beyond the prison", self.level),
            Some(ruleset) => format!(
                "PrisonSecurity {}: no capabilities, no_new_privs, seccomp denylist ({} filters), {}",
                self.level,
                self.filters.len(),
                ruleset.summary()
            ),
        }
    }
}
