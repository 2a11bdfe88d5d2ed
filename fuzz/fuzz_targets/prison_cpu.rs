//! PrisonCPU: no panic; an accepted list is non-empty, within MAX_CPU_ID, and prints back to
//! a list that parses to the same set (what the cgroup's cpuset.cpus and FreeBSD's mask get).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_prison::config::{CpuSet, MAX_CPU_ID};

fuzz_target!(|text: &str| {
    if let Ok(set) = CpuSet::parse(text) {
        let printed = set.to_string();
        let again = CpuSet::parse(&printed).expect("a printed CpuSet parses");
        assert_eq!(again, set, "{text:?} -> {printed:?}");
        assert!(set.iter().next().is_some(), "{text:?} accepted as empty");
        assert!(set.iter().all(|cpu| cpu <= MAX_CPU_ID), "{text:?}");
    }
});
