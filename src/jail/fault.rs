//! Fault injection for the tests: with the `fault-injection` cargo feature (never in a release
//! build), a step named in the `PRISON_FAULT` environment variable fails as if the kernel had
//! refused it, so the tests can show that every failure path fails closed. Without the feature
//! this compiles to nothing.

use super::SetupError;

/// Fails `step` when the tests asked for it.
#[cfg(feature = "fault-injection")]
pub fn inject(step: &str) -> Result<(), SetupError> {
    match std::env::var("PRISON_FAULT") {
        Ok(wanted) if wanted.split(',').any(|w| w == step) => Err(SetupError::check(
            step,
            "fault injected by the tests (PRISON_FAULT)",
        )),
        _ => Ok(()),
    }
}

/// Fails `step` when the tests asked for it (never: built without `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn inject(_step: &str) -> Result<(), SetupError> {
    Ok(())
}
