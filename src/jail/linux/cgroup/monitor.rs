//! The monitor's look at a generation's cgroups: memory use against the report threshold, OOM
//! kills at the deny limit, and forks refused at PrisonProcesses, one log line per event.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::fs;
use super::plan::{MemoryWatch, Version};

#[derive(Debug)]
pub(super) struct MemoryState {
    pub(super) watch: MemoryWatch,
    /// v1: (eventfd, memory.usage_in_bytes), registered at the report threshold.
    pub(super) threshold: Option<(OwnedFd, OwnedFd)>,
    /// Use was at or above the report threshold at the last look.
    pub(super) above: bool,
    pub(super) oom_kills: u64,
    /// v2: memory.peak at the last look.
    pub(super) peak: u64,
}

#[derive(Debug)]
pub(super) struct PidsState {
    pub(super) dir: PathBuf,
    /// PrisonProcesses: tasks beyond httpd's own children.
    pub(super) beyond: u64,
    /// `pids.max`: `beyond` + room for httpd's own children and their threads.
    pub(super) max: u64,
    pub(super) refused: u64,
}

impl MemoryState {
    /// Logs a crossing of the report threshold and OOM kills since the last look.
    pub(super) fn check(&mut self, prison: &str, events: &mut Vec<String>) {
        let dir = &self.watch.dir;
        let v1 = matches!(self.watch.version, Version::V1(_));
        let usage_file = if v1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        let usage = fs::number(&dir.join(usage_file)).unwrap_or(0);
        if let Some(report) = self.watch.report {
            // The highest use since the last look, and whether it also went down and up again.
            let (peak, recrossed) = match &self.threshold {
                Some((efd, _)) => {
                    let crossings = fs::drain_eventfd(efd);
                    if crossings > 0 {
                        let max = dir.join("memory.max_usage_in_bytes");
                        let peak = fs::number(&max).unwrap_or(usage);
                        let _ = fs::write(&max, "0");
                        (peak.max(usage), crossings >= 2)
                    } else {
                        (usage, false)
                    }
                }
                None => {
                    // v2 has no threshold event: memory.peak (all-time) shows a spike between
                    // two looks only while it rises.
                    let peak = fs::number(&dir.join("memory.peak")).unwrap_or(0);
                    let rose = peak > self.peak;
                    self.peak = self.peak.max(peak);
                    (if rose { peak.max(usage) } else { usage }, false)
                }
            };
            if peak >= report && (!self.above || recrossed) {
                events.push(format!(
                    "prison {prison}: memory use reached {peak} bytes, crossing the PrisonMemory \
                     report threshold {report} bytes (in use now: {usage} bytes)"
                ));
            }
            self.above = usage >= report;
        }
        let (file, key) = if v1 {
            ("memory.oom_control", "oom_kill")
        } else {
            ("memory.events", "oom_kill")
        };
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        let kills = fs::counter(&text, key).unwrap_or(self.oom_kills);
        if kills > self.oom_kills {
            let deny = self
                .watch
                .deny
                .map_or("(none: the host ran out)".to_owned(), |d| {
                    format!("{d} bytes")
                });
            events.push(format!(
                "prison {prison}: out of memory, the kernel killed {} process(es) in the prison \
                 at the PrisonMemory deny limit {deny}",
                kills - self.oom_kills
            ));
        }
        self.oom_kills = kills;
    }
}

impl PidsState {
    /// Logs the forks refused at `pids.max` since the last look, with who holds the tasks.
    pub(super) fn check(&mut self, prison: &str, proc_root: &Path, events: &mut Vec<String>) {
        let text = std::fs::read_to_string(self.dir.join("pids.events")).unwrap_or_default();
        let refused = fs::counter(&text, "max").unwrap_or(self.refused);
        if refused > self.refused {
            let (children, theirs) = httpd_children_in(proc_root, &self.dir);
            let current = fs::number(&self.dir.join("pids.current")).unwrap_or(0);
            events.push(format!(
                "prison {}: {} fork(s) refused at the PrisonProcesses limit {} (pids.max {} \
                 = {} + room for httpd's own children and their threads); the prison holds \
                 {current} tasks, {theirs} of them httpd's {children} children and their \
                 threads",
                prison,
                refused - self.refused,
                self.beyond,
                self.max,
                self.beyond,
            ));
        }
        self.refused = refused;
    }
}

/// httpd's own children (this process's children: workers, the cgid daemon) among the tasks
/// of the cgroup `dir`, and how many tasks they hold with their threads.
fn httpd_children_in(proc_root: &Path, dir: &Path) -> (u64, u64) {
    let me = std::process::id().to_string();
    let mut found = (0, 0);
    for pid in fs::tasks(dir) {
        let status =
            std::fs::read_to_string(proc_root.join(format!("{pid}/status"))).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key == name).then(|| value.trim().to_owned())
            })
        };
        if field("PPid").as_deref() == Some(me.as_str()) {
            found.0 += 1;
            found.1 += field("Threads").and_then(|t| t.parse().ok()).unwrap_or(1);
        }
    }
    found
}
