//! PrisonProcesses: no panic; an accepted count is 1..=MAX_PROCESSES (pids.max, rctl maxproc).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_prison::config::{parse_processes, MAX_PROCESSES};

fuzz_target!(|text: &str| {
    if let Ok(Some(n)) = parse_processes(text) {
        assert!((1..=MAX_PROCESSES).contains(&n), "{text:?}");
    }
});
