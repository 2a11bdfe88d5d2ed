//! What can go wrong in the FreeBSD backend, one variant per step, each naming the jail and
//! the value involved. `Display` reads like an error-log line: "creating jail www at
//! /usr/jails/www: jail_set: jail \"www\" already exists (File exists (os error 17))".

use std::io;

use thiserror::Error;

use super::kernel::Jid;
use super::plan::{JailName, MaskError, PlanError};
use crate::config::CpuSet;
use crate::jail::SetupError;

#[derive(Debug, Error)]
pub enum Error {
    #[error("building prison {prison}: httpd must be started as root to create a jail")]
    NotRoot { prison: String },
    #[error("carrying over the previous generation's jail: not supported on FreeBSD (its failed build retired it)")]
    NoCarryOver,
    #[error("building prison {prison}: planning the jail: {source}")]
    Plan {
        prison: String,
        #[source]
        source: PlanError,
    },
    #[error("building prison {prison}: reading PrisonDir {path}: {source}")]
    PrisonDir {
        prison: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("choosing a jail name for prison {prison}: {source}")]
    Name {
        prison: String,
        #[source]
        source: NameError,
    },
    #[error("creating jail {name} at {path}: removing stale rctl rules: {source}")]
    StaleRules {
        name: JailName,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("creating jail {name} at {path}: jail_set: {source}")]
    Create {
        name: JailName,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("starting the reaper of jail {name}: {source}")]
    Reaper {
        name: JailName,
        #[source]
        source: io::Error,
    },
    #[error("reusing jail {name} (jid {jid}): updating its parameters: {source}")]
    Update {
        name: JailName,
        jid: Jid,
        #[source]
        source: io::Error,
    },
    #[error("reusing jail {name}: telling its reaper the new report threshold: {source}")]
    Report {
        name: JailName,
        #[source]
        source: io::Error,
    },
    #[error("restricting jail {name} to CPUs {cpus}: {source}")]
    CpuMask {
        name: JailName,
        cpus: CpuSet,
        #[source]
        source: MaskError,
    },
    #[error("restricting jail {name} to CPUs {cpus}: cpuset_setaffinity: {source}")]
    Cpuset {
        name: JailName,
        cpus: CpuSet,
        #[source]
        source: io::Error,
    },
    #[error("setting rctl rule {rule}: {source}")]
    Rctl {
        rule: String,
        #[source]
        source: io::Error,
    },
    #[error("closing directory descriptors before joining the jail: {0}")]
    CloseDirectories(#[source] io::Error),
    #[error("joining jail {name} (jid {jid}): {source}")]
    Attach {
        name: JailName,
        jid: Jid,
        #[source]
        source: io::Error,
    },
    /// Switching to or checking the httpd User (shared with the Linux backend).
    #[error(transparent)]
    Identity(#[from] SetupError),
    #[error("checking the child's jail: security.jail.jailed is 0: the child is not in a jail")]
    NotJailed,
    #[error("checking the child's root: {0}")]
    Root(#[source] io::Error),
    #[error("checking the child's root: / is not PrisonDir: the child is not in the prison")]
    WrongRoot,
    #[error("reading the child's hostname: {0}")]
    Hostname(#[source] io::Error),
    #[error("checking the child's jail: hostname is {found:?}, not the prison's {want:?}")]
    WrongHostname { found: String, want: String },
    /// A build that failed after noting something the admin should also read.
    #[error("{error} (before that: {})", notes.join("; "))]
    WithNotes {
        error: Box<Error>,
        notes: Vec<String>,
    },
}

/// Why no jail name could be chosen.
#[derive(Debug, Error)]
pub enum NameError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("jail_get: {0}")]
    Lookup(#[source] io::Error),
    #[error("{0} and all its generation names are taken by live jails")]
    AllTaken(String),
}

impl Error {
    /// Adds the notes a failed build had already made, so they reach the error log with it.
    pub fn with_notes(self, notes: Vec<String>) -> Self {
        if notes.is_empty() {
            self
        } else {
            Self::WithNotes {
                error: Box::new(self),
                notes,
            }
        }
    }
}

/// For the httpd glue while it still takes `SetupError` (see `backend::Backend`).
impl From<Error> for SetupError {
    fn from(e: Error) -> Self {
        match e {
            Error::Identity(e) => e,
            other => SetupError::new("FreeBSD jail", io::Error::other(other)),
        }
    }
}
