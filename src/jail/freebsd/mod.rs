//! FreeBSD backend: libjail, cpuset, rctl and the reaper (issue 7). Placeholder with the
//! shared interface until the backend lands.

use std::io;

use crate::config::Prison;

use super::{Identity, SetupError};

/// What the children of one generation need to join the prison.
#[derive(Debug)]
pub struct Prepared {
    identity: Identity,
}

impl Prepared {
    /// Parent, root: create (or reuse) the prison for this generation.
    pub fn build(prison: &Prison, identity: &Identity) -> Result<Self, SetupError> {
        let _ = (prison, identity);
        Err(SetupError::new(
            "building the FreeBSD jail",
            io::Error::from(io::ErrorKind::Unsupported),
        ))
    }

    /// Child, root, single-threaded: join the prison and become the httpd User.
    pub fn attach(&self) -> Result<(), SetupError> {
        Err(SetupError::new(
            "attaching to the FreeBSD jail",
            io::Error::from(io::ErrorKind::Unsupported),
        ))
    }

    /// Child, after every other drop_privileges hook: assert we are jailed and not root.
    pub fn verify(&self) -> Result<(), SetupError> {
        self.identity.verify_current()
    }

    /// What PrisonSecurity enforces in the children, for the error log.
    pub fn security_summary(&self) -> String {
        String::new()
    }

    /// Parent: this generation's configuration is being torn down for a restart.
    pub fn release(self) {}

    /// Parent: httpd is exiting; remove everything the prison left on the host.
    pub fn teardown(self) {}
}
