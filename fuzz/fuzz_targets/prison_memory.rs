//! PrisonMemory: no panic; accepted limits fit the kernel's signed 64-bit counters
//! (memory.max, memory.limit_in_bytes, rctl) and report never exceeds a set deny.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_prison::config::MemoryLimits;

fuzz_target!(|words: (&str, &str)| {
    if let Ok(limits) = MemoryLimits::parse(words.0, words.1) {
        for bytes in [limits.report, limits.deny].into_iter().flatten() {
            assert!(
                bytes > 0 && bytes <= i64::MAX as u64,
                "{words:?} -> {bytes}"
            );
        }
        if let (Some(report), Some(deny)) = (limits.report, limits.deny) {
            assert!(report <= deny, "{words:?}");
        }
    }
});
