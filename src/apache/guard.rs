//! One wrapper for every `extern "C"` entry: no panic crosses into httpd.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; if it panics, returns `on_panic` instead. The panic message has already gone to
/// stderr (httpd's error log) through the default hook.
pub fn ffi_guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    // AssertUnwindSafe: on panic nothing observes the closure's state again; the caller gets
    // the fail-closed value.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}
