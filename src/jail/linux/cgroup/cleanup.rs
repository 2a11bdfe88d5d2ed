//! Removing the prison's cgroups: the empty ones of earlier generations (a crashed run's
//! among them) before a new generation is numbered, and by the monitor once their last task is
//! gone, except the previous generation's for a grace period after a restart; a failed build's;
//! and every generation's at exit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{fs, Cgroups};

/// Every cgroup of a prison is named `prison-<name>.<generation>`; `.` never occurs in a
/// PrisonName, so the generations of one prison never match another's.
pub(super) const PREFIX: &str = "prison-";

/// How long teardown waits for the last tasks to leave before it kills them, and after.
const TEARDOWN_PATIENCE: Duration = Duration::from_secs(2);

/// How long after a restart the previous generation's cgroups are kept even when empty: a
/// child forked for it just before the restart joins within milliseconds.
const PREDECESSOR_GRACE: Duration = Duration::from_secs(2);

impl Cgroups {
    /// The next generation's leaf, after removing the empty cgroups of earlier generations
    /// (stale ones of a crashed run among them), except the predecessor's. One that still holds
    /// tasks (children orphaned by a crash) stays, and the new leaf is numbered past it.
    pub(super) fn next_leaf(&self, bases: &[PathBuf]) -> String {
        let last = bases
            .iter()
            .flat_map(|base| generations(base, &self.prison))
            .filter(|(dir, _)| {
                self.is_predecessor(dir) || !fs::remove(self.tree, dir).unwrap_or(false)
            })
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        format!("{PREFIX}{}.{}", self.prison, last + 1)
    }

    pub(super) fn is_predecessor(&self, dir: &Path) -> bool {
        self.predecessor.is_some()
            && dir.file_name().and_then(|n| n.to_str()) == self.predecessor.as_deref()
    }

    /// Monitor: removes the earlier generations whose last task is gone; the predecessor only
    /// once `PREDECESSOR_GRACE` has passed since this generation was built.
    pub(super) fn remove_empty_others(&self) {
        let young = self.built.elapsed() < PREDECESSOR_GRACE;
        for (dir, _) in self.other_generations() {
            if !(young && self.is_predecessor(&dir)) {
                let _ = fs::remove(self.tree, &dir);
            }
        }
    }

    /// Every cgroup a generation of this prison may have been created under: httpd's own in
    /// each hierarchy, and its parent on v2. Earlier generations may have had other limits.
    pub(super) fn all_bases(&self) -> Vec<PathBuf> {
        let mut bases: Vec<PathBuf> = self.groups.iter().map(|g| g.base.clone()).collect();
        if let Some(layout) = &self.layout {
            bases.extend(layout.v1.values().map(|h| h.own.clone()));
            if let Some(v2) = &layout.v2 {
                bases.push(v2.own.clone());
                if v2.own != v2.mount {
                    bases.extend(v2.own.parent().map(Path::to_owned));
                }
            }
        }
        bases.sort();
        bases.dedup();
        bases
    }

    pub(super) fn other_generations(&self) -> Vec<(PathBuf, u64)> {
        let ours: Vec<&Path> = self.dirs().collect();
        self.all_bases()
            .iter()
            .flat_map(|base| generations(base, &self.prison))
            .filter(|(dir, _)| !ours.contains(&dir.as_path()))
            .collect()
    }

    /// Parent, at exit: removes every cgroup of the prison, of every generation. Tasks that
    /// are still inside after a short wait (a CGI outliving the cgid daemon) are killed first,
    /// as removing a FreeBSD jail does. Returns what could not be removed, for the log.
    pub fn teardown(self) -> Vec<String> {
        let mut dirs: Vec<PathBuf> = self.dirs().map(Path::to_owned).collect();
        dirs.extend(self.other_generations().into_iter().map(|(dir, _)| dir));
        let mut problems = Vec::new();
        for round in 0..2 {
            let deadline = Instant::now() + TEARDOWN_PATIENCE;
            loop {
                dirs.retain(|dir| match fs::remove(self.tree, dir) {
                    Ok(gone) => !gone,
                    Err(e) => {
                        problems.push(format!("removing cgroup {}: {e}", dir.display()));
                        false
                    }
                });
                if dirs.is_empty() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if round == 0 {
                let me = std::process::id() as i32;
                let tasks = dirs.iter().flat_map(|dir| fs::tasks(dir));
                for pid in tasks.filter(|&pid| pid > 1 && pid != me) {
                    // SAFETY: kill has no memory-safety preconditions; the pid was read from
                    // the prison's own cgroup, which only httpd's prisoners join.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        problems.extend(dirs.iter().map(|dir| {
            format!(
                "removing cgroup {}: still busy; it is removed at the next start",
                dir.display()
            )
        }));
        problems
    }

    /// After a failed build: remove what was created (nobody joined yet).
    pub(super) fn remove_created(&mut self) {
        for group in self.groups.drain(..).rev() {
            let _ = fs::remove(self.tree, &group.dir);
        }
    }
}

/// The cgroups of `prison`'s generations under `base`: (dir, generation).
fn generations(base: &Path, prison: &str) -> Vec<(PathBuf, u64)> {
    let prefix = format!("{PREFIX}{prison}.");
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let n = name.to_str()?.strip_prefix(&prefix)?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((entry.path(), n.parse().ok()?))
        })
        .collect()
}
