//! The prison itself: one small interface, one backend per platform.
//!
//! httpd's privilege phases fix the shape (see README "How a child is jailed"):
//! - **parent, root** (`post_config`, pass 2 and every restart): `Prepared::build` creates the
//!   prison once per generation (or reuses the previous generation's, see the carry below) from
//!   the validated [`Prison`](crate::config::Prison) and the [`Identity`] the children will run
//!   as. Everything a child needs is computed here.
//! - **child, root, single-threaded** (`drop_privileges`, REALLY_FIRST): `Prepared::attach`
//!   moves the calling process into the prison and switches to the httpd User/Group.
//! - **child, after every other drop_privileges hook** (REALLY_LAST): `Prepared::verify`
//!   asserts the result. Any error here or in attach fails the child closed.
//! - **parent**: `Prepared::release` when a generation's configuration is torn down (restart),
//!   `Prepared::teardown` when httpd exits; `Prepared::monitor` periodically in between (the
//!   prison's resource events for the error log).
//!
//! **Carry across a restart.** httpd unloads and reloads the module at every restart (mod_so's
//! `unload_module` is a cleanup on pconf), so no Rust value, static or heap, may cross from one
//! generation to the next: its code and memory may be gone. `Prepared::release` returns
//! instead a small plain-text *carry*, what the next generation may reuse (FreeBSD: the live
//! jail's jid, name, create-only parameters, the master pid, and the number of its reaper's
//! pipe, left open; Linux: the whole prison — namespace, PrisonDir and claim descriptors left
//! open, cgroups and settings — though each generation builds its own). The httpd glue keeps it
//! in the process pool (which outlives every reload) and hands it to the next
//! `Prepared::build(prison, identity, carry)`, `None` at first start; a carry nobody builds
//! with (the prison was removed from the configuration) goes to `Prepared::retire`. If the
//! build fails at a restart, `Prepared::carry_over(prison, identity, carry)` gives the new
//! generation the carried prison instead (Linux; FreeBSD refuses), so that a restart never
//! leaves the host without a jailed httpd.
//!
//! These calls are the [`backend::Backend`] trait; both backends' `Prepared` implement it, and
//! the httpd glue calls them through it only.

pub mod backend;
pub mod fault;
pub mod identity;

// Compiled everywhere: its pure plan is unit-tested on Linux; the syscalls are FreeBSD-only.
pub mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::Prepared;

#[cfg(target_os = "linux")]
mod linux;
/// PrisonConnect's programs against their model, for the fuzz target.
#[cfg(all(target_os = "linux", feature = "fuzzing"))]
pub use linux::fuzz;
#[cfg(target_os = "linux")]
pub use linux::Prepared;
/// The cgroup-BPF attachments as the kernel reports them, for the tests' outside checks.
#[cfg(target_os = "linux")]
pub use linux::{attached, program_loaded};

use std::io;

use thiserror::Error;

pub use identity::Identity;

/// A step of building, joining or checking the prison failed. `Display` reads like an
/// operations log line: "joining the prison's mount namespace: Invalid argument (os error 22)".
#[derive(Debug, Error)]
#[error("{step}: {source}")]
pub struct SetupError {
    pub step: String,
    #[source]
    pub source: io::Error,
}

impl SetupError {
    pub fn new(step: impl Into<String>, source: io::Error) -> Self {
        Self {
            step: step.into(),
            source,
        }
    }

    /// The step failed with the current `errno`.
    pub fn last_os_error(step: impl Into<String>) -> Self {
        Self::new(step, io::Error::last_os_error())
    }

    /// A check that found the wrong state (no errno involved).
    pub fn check(step: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(step, io::Error::other(what.into()))
    }
}

/// Turns a C-style `-1`/errno return into a typed error naming the step.
pub fn check_ret<T: Into<i64> + Copy>(
    ret: T,
    step: impl FnOnce() -> String,
) -> Result<T, SetupError> {
    if ret.into() == -1 {
        Err(SetupError::last_os_error(step()))
    } else {
        Ok(ret)
    }
}
