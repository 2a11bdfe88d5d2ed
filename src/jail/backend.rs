//! The one interface the httpd glue (`apache/hooks.rs`) uses, whatever the platform: what a
//! prison backend's `Prepared` does in each of httpd's phases (see the module doc of
//! `jail`). Both backends' `Prepared` implement it, and the glue calls it through this trait
//! only (checked for Linux by every build, for FreeBSD by `make check-freebsd-link`, which
//! compiles the glue for that target).

use crate::config::{MpmCeiling, Prison};
use crate::jail::{Identity, SetupError};

pub trait Backend: Sized {
    /// A step that failed, naming the step and the path or value; the glue logs its `Display`.
    /// The glue's own steps (resolving the User) fail with a [`SetupError`].
    type Error: std::error::Error + From<SetupError> + Send + Sync + 'static;

    /// Parent, root (post_config, pass 2 and every restart): builds this generation's prison
    /// from the validated configuration and the identity the children will run as. `carry` is
    /// what the previous generation's [`Backend::release`] returned (`None` at first start).
    /// What the build wants the admin to know besides an error comes out of the first
    /// [`Backend::monitor`].
    /// `mpm` is what the MPM says of httpd's own children (room for them in task limits).
    fn build(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: Option<&str>,
    ) -> Result<Self, Self::Error>;

    /// Parent, root, under `apachectl -t` only: everything `build` does that can fail, without
    /// leaving anything behind. Returns what was checked, for the log.
    fn dry_run(prison: &Prison, mpm: &MpmCeiling) -> Result<String, Self::Error>;

    /// Parent, root, at a restart whose `build` failed: the new generation's children run in
    /// the previous generation's prison as `carry` hands it over. Returns it with what of
    /// `prison` does not apply, for the error log. A backend that cannot refuses, and httpd
    /// stops.
    fn carry_over(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: &str,
    ) -> Result<(Self, String), Self::Error>;

    /// Parent: a carry no generation builds with (the prison left the configuration). Returns
    /// what the error log should say.
    fn retire(carry: &str) -> Vec<String>;

    /// Child, root, single-threaded (drop_privileges, REALLY_FIRST): joins the prison and
    /// becomes the httpd User. Any error ends the child.
    fn attach(&self) -> Result<(), Self::Error>;

    /// Child, after every other drop_privileges hook: asserts the child is in the prison and
    /// not root.
    fn verify(&self) -> Result<(), Self::Error>;

    /// What PrisonSecurity enforces in the children, for the error log.
    fn security_summary(&self) -> String;

    /// Parent, periodically: lines for the error log (resource events, and first what the
    /// build noted).
    fn monitor(&mut self) -> Vec<String>;

    /// Parent, at a restart: the carry for the next generation's `build` (`None` outside the
    /// parent that built it, or when nothing needs carrying).
    fn release(self) -> Option<String>;

    /// Parent, at exit: removes what the prison left; returns what went wrong.
    fn teardown(self) -> Vec<String>;
}
