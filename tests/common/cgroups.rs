//! The cgroups named for a prison, in every hierarchy, and their removal.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;

/// Where the cgroup filesystems are mounted on the test hosts.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Every cgroup directory on the host named for `prison` (`prison-<name>.<n>`), at any depth
/// and in every hierarchy (v1 controllers, the hybrid host's `unified`, or pure v2).
pub fn prison_cgroups(prison: &str) -> BTreeSet<PathBuf> {
    let prefix = format!("prison-{prison}.");
    let mut found = BTreeSet::new();
    let mut todo = vec![PathBuf::from(CGROUP_ROOT)];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Cgroups are directories; control files are not, and no symlinks are followed.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                found.insert(path.clone());
            }
            todo.push(path);
        }
    }
    found
}

/// Removes the cgroups named for `prison`, killing any task still inside, so that a failed
/// test leaves none behind. Tests that check cleanup look before this runs (on drop).
pub fn remove_prison_cgroups(prison: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = prison_cgroups(prison);
        if left.is_empty() || Instant::now() > deadline {
            return;
        }
        // Deepest first.
        for dir in left.iter().rev() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // Only tasks of the test's own prison cgroup are killed.
                kill9(pid);
            }
            let _ = fs::remove_dir(dir);
        }
        sleep(Duration::from_millis(50));
    }
}
