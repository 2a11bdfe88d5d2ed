//! Landlock: file access limited to the prison root, signals and abstract unix sockets scoped
//! to the prison.
//!
//! The mount namespace already hides the host; Landlock closes what it cannot: a directory
//! descriptor from the host that reaches the prison (leaked, or passed over a unix socket)
//! opens nothing, because every path reached through it lies outside the prison root. The
//! ruleset is created once in the parent, on PrisonDir (the same inode as the prison's `/`),
//! and each child restricts itself with a duplicate of it.
//!
//! Best effort: on a kernel with an older ABI the crate enforces what it can, and the parent
//! logs what is missing (see [`Ruleset::summary`]).

use std::path::Path;

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, Ruleset as LandlockRuleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::jail::SetupError;

/// The ABI whose rights this ruleset was written and tested against: all file rights of
/// ABI 6 (including REFER, TRUNCATE and IOCTL_DEV) and its scopes (signals, abstract sockets).
const TARGET: ABI = ABI::V6;
/// Scopes came with ABI 6 (Linux 6.12).
const SCOPES_ABI: i32 = 6;

/// The running kernel's Landlock ABI: 0 when it has none (not built, or not enabled at boot).
pub fn kernel_abi() -> i32 {
    // SAFETY: with a null attribute, size 0 and LANDLOCK_CREATE_RULESET_VERSION, the call only
    // returns the ABI version (or -1); it reads no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    i32::try_from(v.max(0)).unwrap_or(0)
}

/// What a child enforces, and what is missing on this kernel.
pub fn describe(abi: i32) -> String {
    match abi {
        0 => "Landlock unavailable on this kernel: NOT enforced (file access is limited by the \
              mount namespace only; leaked host directory descriptors are not contained)"
            .to_owned(),
        1..SCOPES_ABI => format!(
            "Landlock ABI {abi}: file access limited to the prison root; signals and abstract \
             unix sockets NOT scoped (needs ABI {SCOPES_ABI}, Linux 6.12)"
        ),
        _ => format!(
            "Landlock ABI {abi}: file access limited to the prison root, signals and abstract \
             unix sockets scoped to the prison"
        ),
    }
}

/// The prepared ruleset and the ABI it will meet.
#[derive(Debug)]
pub struct Ruleset {
    created: RulesetCreated,
    abi: i32,
}

impl Ruleset {
    /// Parent: the ruleset "everything beneath PrisonDir, nothing else".
    pub fn build(prison_dir: &Path) -> Result<Self, SetupError> {
        let step = || {
            format!(
                "preparing the Landlock ruleset for {}",
                prison_dir.display()
            )
        };
        let fail = |e: &dyn std::fmt::Display| SetupError::check(step(), e.to_string());
        let root = PathFd::new(prison_dir).map_err(|e| fail(&e))?;
        let created = LandlockRuleset::default()
            .handle_access(AccessFs::from_all(TARGET))
            .and_then(|r| r.scope(Scope::from_all(TARGET)))
            .and_then(|r| r.create())
            .and_then(|r| r.add_rule(PathBeneath::new(root, AccessFs::from_all(TARGET))))
            .map_err(|e| fail(&e))?;
        Ok(Self {
            created,
            abi: kernel_abi(),
        })
    }

    /// Child, single-threaded, after the user switch: restricts the calling process. Fails if
    /// the kernel enforced less than it announced to the parent.
    pub fn restrict(&self) -> Result<(), SetupError> {
        let step = "restricting the child with Landlock";
        let ruleset = self
            .created
            .try_clone()
            .map_err(|e| SetupError::new(step, e))?;
        let status = ruleset
            .restrict_self()
            .map_err(|e| SetupError::check(step, e.to_string()))?;
        let expected = match self.abi {
            0 => RulesetStatus::NotEnforced,
            1..SCOPES_ABI => RulesetStatus::PartiallyEnforced,
            _ => RulesetStatus::FullyEnforced,
        };
        let rank = |s: &RulesetStatus| match s {
            RulesetStatus::NotEnforced => 0,
            RulesetStatus::PartiallyEnforced => 1,
            RulesetStatus::FullyEnforced => 2,
        };
        if rank(&status.ruleset) < rank(&expected) {
            return Err(SetupError::check(
                step,
                format!("{:?}, expected {expected:?}", status.ruleset),
            ));
        }
        Ok(())
    }

    pub fn summary(&self) -> String {
        describe(self.abi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degradation_is_spelled_out() {
        assert!(describe(0).contains("NOT enforced"));
        assert!(describe(4).contains("NOT scoped"));
        assert!(describe(4).contains("limited to the prison root"));
        assert!(!describe(6).contains("NOT"));
        assert!(!describe(7).contains("NOT"));
    }

    #[test]
    fn this_kernel_reports_an_abi() {
        // The project's machines have Landlock (ABI 7 on 6.18); a kernel without it reports 0,
        // and the prison would then run unconfined by Landlock.
        assert!(
            kernel_abi() > 0,
            "this kernel has no Landlock: build it with CONFIG_SECURITY_LANDLOCK and lsm=landlock"
        );
    }
}
