//! The prison's cgroups: PrisonMemory (deny = the memory limit, report = a threshold the
//! monitor logs), PrisonCPU (a cpuset), PrisonProcesses (pids.max), and the cgroup v2 directory
//! that PrisonIP's BPF programs attach to.
//!
//! Per generation, the parent creates `prison-<name>.<n>` under httpd's own cgroup (in each v1
//! hierarchy that holds a needed controller; on v2 beside httpd's own cgroup in its delegated
//! parent) and writes every limit before anyone joins. Each child and the cgid daemon join in
//! `attach`, before `setns(mnt)`: inside the prison there is no cgroupfs. CGIs inherit. The
//! parent never joins. `<n>` grows with each graceful restart, so new limits apply to the new
//! generation while old children finish in the old one; the monitor removes an old generation's
//! cgroups once they are empty, and the next start removes those a crash left behind.

mod fs;
pub mod layout;
pub mod plan;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::jail::SetupError;
use layout::{Hierarchy, Layout};
use plan::{Group, MemoryWatch, Setting, V2Facts, Value, Version};

pub use plan::Limits;

impl Limits {
    /// The limits of `prison` that cgroups enforce.
    pub fn of(prison: &crate::config::Prison) -> Self {
        Self {
            memory_report: prison.memory.report,
            memory_deny: prison.memory.deny,
            cpus: prison.cpus.as_ref().map(ToString::to_string),
            processes: prison.processes,
        }
    }
}

/// Every cgroup of a prison is named `prison-<name>.<generation>`; `.` never occurs in a
/// PrisonName, so the generations of one prison never match another's.
const PREFIX: &str = "prison-";

/// How long teardown waits for the last tasks to leave before it kills them, and after.
const TEARDOWN_PATIENCE: Duration = Duration::from_secs(2);

/// The prison's cgroups of one generation, as created by the parent.
#[derive(Debug)]
pub struct Cgroups {
    prison: String,
    proc_root: PathBuf,
    layout: Option<Layout>,
    /// `prison-<name>.<n>`, once any cgroup exists.
    leaf: Option<String>,
    /// Created, limits written, in creation order; every child joins each.
    groups: Vec<Group>,
    memory: Option<MemoryState>,
    pids: Option<PidsState>,
}

#[derive(Debug)]
struct MemoryState {
    watch: MemoryWatch,
    /// v1: (eventfd, memory.usage_in_bytes), registered at the report threshold.
    threshold: Option<(OwnedFd, OwnedFd)>,
    /// Use was at or above the report threshold at the last look.
    above: bool,
    oom_kills: u64,
    /// v2: memory.peak at the last look.
    peak: u64,
}

#[derive(Debug)]
struct PidsState {
    dir: PathBuf,
    max: u64,
    refused: u64,
}

impl Cgroups {
    /// Parent, root: creates this generation's cgroups for `limits` and writes the limits.
    /// `proc_root` is `/proc` (the tests pass a fabricated one); nothing is read when no limit
    /// is set.
    pub fn create(prison: &str, limits: &Limits, proc_root: &Path) -> Result<Self, SetupError> {
        let mut this = Self {
            prison: prison.to_owned(),
            proc_root: proc_root.to_owned(),
            layout: None,
            leaf: None,
            groups: Vec::new(),
            memory: None,
            pids: None,
        };
        if limits.controllers().is_empty() {
            return Ok(this);
        }
        match this.create_groups(limits) {
            Ok(()) => Ok(this),
            Err(e) => {
                this.remove_created();
                Err(e)
            }
        }
    }

    fn create_groups(&mut self, limits: &Limits) -> Result<(), SetupError> {
        let layout = self.layout()?.clone();
        let (v1, v2_needed) = plan::split(limits, &layout);
        let facts = match (&layout.v2, v2_needed.is_empty()) {
            (Some(v2), false) => Some(v2_facts(v2)?),
            _ => None,
        };
        let mut bases: Vec<PathBuf> = v1.iter().map(|(_, h)| h.own.clone()).collect();
        bases.extend(facts.iter().map(|f| f.base.clone()));
        let leaf = self.next_leaf(&bases);
        let plan = plan::plan(limits, &layout, facts.as_ref(), &leaf).map_err(|e| {
            SetupError::check(
                format!(
                    "creating the cgroups of prison {} (cgroup layout: {})",
                    self.prison,
                    layout.kind()
                ),
                e.to_string(),
            )
        })?;
        self.leaf = Some(leaf);
        for group in plan.groups {
            self.apply(group)?;
        }
        if let Some(watch) = plan.memory {
            let threshold = match (watch.version, watch.report) {
                (Version::V1(_), Some(report)) => Some(fs::memory_threshold(&watch.dir, report)?),
                _ => None,
            };
            self.memory = Some(MemoryState {
                watch,
                threshold,
                above: false,
                oom_kills: 0,
                peak: 0,
            });
        }
        if let Some(max) = limits.processes {
            let dir = self
                .groups
                .iter()
                .find(|g| g.settings.iter().any(|s| s.file == "pids.max"));
            self.pids = dir.map(|g| PidsState {
                dir: g.dir.clone(),
                max,
                refused: 0,
            });
        }
        Ok(())
    }

    fn layout(&mut self) -> Result<&Layout, SetupError> {
        if self.layout.is_none() {
            let own = fs::read(&self.proc_root.join("self/cgroup"))?;
            let mounts = fs::read(&self.proc_root.join("self/mountinfo"))?;
            self.layout = Some(Layout::parse(&mounts, &own));
        }
        Ok(self.layout.get_or_insert_with(Layout::default))
    }

    /// The next free generation under all `bases`, after removing the empty cgroups of earlier
    /// generations (an old generation whose children are gone, or a crashed httpd's).
    fn next_leaf(&self, bases: &[PathBuf]) -> String {
        let last = bases
            .iter()
            .flat_map(|base| generations(base, &self.prison))
            .filter(|(dir, _)| !fs::remove(dir).unwrap_or(false))
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        format!("{PREFIX}{}.{}", self.prison, last + 1)
    }

    /// mkdir one cgroup and write its limits; it is recorded first, so a failure removes it.
    fn apply(&mut self, group: Group) -> Result<(), SetupError> {
        let step = format!("creating the cgroups of prison {}", self.prison);
        for controller in &group.enable {
            let control = group.base.join("cgroup.subtree_control");
            fs::write(&control, &format!("+{controller}")).map_err(|e| {
                hint(
                    e,
                    libc::EBUSY,
                    "cgroup v2 hands no controller to the children of a cgroup that holds \
                     processes: run httpd in a leaf of its delegated cgroup (systemd: \
                     DelegateSubgroup=main)",
                )
            })?;
        }
        std::fs::create_dir(&group.dir).map_err(|e| {
            let e = SetupError::new(format!("{step}: mkdir {}", group.dir.display()), e);
            let e = hint(
                e,
                libc::EEXIST,
                "another httpd with the same PrisonName uses it; PrisonName must be unique",
            );
            let e = hint(
                e,
                libc::EACCES,
                "httpd's cgroup is not writable: httpd must start as root and its cgroup must be delegated to it",
            );
            hint(
                e,
                libc::EROFS,
                "the cgroup filesystem is mounted read-only (a container?)",
            )
        })?;
        let settings = group.settings.clone();
        let base = group.base.clone();
        let dir = group.dir.clone();
        self.groups.push(group);
        for Setting { file, value } in settings {
            let value = match value {
                Value::Text(text) => text,
                Value::FromBase => fs::read(&base.join(file))?.trim().to_owned(),
            };
            fs::write(&dir.join(file), &value).map_err(|e| match file {
                "cpuset.cpus" => hint(
                    e,
                    libc::EINVAL,
                    &format!("PrisonCPU must lie within {}/cpuset.cpus", base.display()),
                ),
                _ => e,
            })?;
        }
        Ok(())
    }

    /// Parent: the prison's cgroup on the v2 hierarchy, created (without controllers) if no
    /// limit needed one: PrisonIP attaches its cgroup-BPF programs there. On a hybrid host it
    /// lies under `/sys/fs/cgroup/unified`. Call it in `Prepared::build`, before any child
    /// starts: every child joins every cgroup that exists then.
    #[allow(dead_code)] // PrisonIP's (issue 6); the unit tests use it until then.
    pub fn v2_dir(&mut self) -> Result<PathBuf, SetupError> {
        if let Some(group) = self.groups.iter().find(|g| g.version == Version::V2) {
            return Ok(group.dir.clone());
        }
        let step = format!("creating the cgroup v2 directory of prison {}", self.prison);
        let Some(v2) = self.layout()?.v2.clone() else {
            return Err(SetupError::check(
                step,
                "no cgroup2 hierarchy is mounted (mount it, e.g. at /sys/fs/cgroup/unified)",
            ));
        };
        let leaf = match &self.leaf {
            Some(leaf) => leaf.clone(),
            None => self.next_leaf(std::slice::from_ref(&v2.own)),
        };
        self.leaf = Some(leaf.clone());
        let group = Group {
            version: Version::V2,
            base: v2.own.clone(),
            dir: v2.own.join(leaf),
            enable: Vec::new(),
            settings: Vec::new(),
        };
        let dir = group.dir.clone();
        self.apply(group)?;
        Ok(dir)
    }

    /// The cgroup directories every child joins (for the tests and the log).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.groups.iter().map(|g| g.dir.as_path())
    }

    /// Child, root, before `setns(mnt)` (the host's cgroupfs must still be visible): moves
    /// the calling process into every cgroup of the prison.
    pub fn join(&self) -> Result<(), SetupError> {
        for group in &self.groups {
            fs::write(&group.dir.join("cgroup.procs"), "0").map_err(|e| SetupError {
                step: format!("joining the cgroup of prison {}: {}", self.prison, e.step),
                source: e.source,
            })?;
        }
        if let Some((efd, usage)) = self.memory.as_ref().and_then(|m| m.threshold.as_ref()) {
            for fd in [efd, usage] {
                // SAFETY: the child's copies of the parent's watch descriptors; the child never
                // uses them (and never drops its Prepared), and must not read the parent's events.
                unsafe { libc::close(fd.as_raw_fd()) };
            }
        }
        Ok(())
    }

    /// Parent, periodically: what happened since the last look, one line per event for the
    /// error log. Also removes earlier generations whose last task is gone.
    pub fn monitor(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        if let Some(memory) = &mut self.memory {
            memory.check(&self.prison, &mut events);
        }
        if let Some(pids) = &mut self.pids {
            let text = std::fs::read_to_string(pids.dir.join("pids.events")).unwrap_or_default();
            let refused = fs::counter(&text, "max").unwrap_or(pids.refused);
            if refused > pids.refused {
                events.push(format!(
                    "prison {}: {} fork(s) refused at the PrisonProcesses limit {}",
                    self.prison,
                    refused - pids.refused,
                    pids.max
                ));
            }
            pids.refused = refused;
        }
        for (dir, _) in self.other_generations() {
            let _ = fs::remove(&dir);
        }
        events
    }

    fn bases(&self) -> Vec<PathBuf> {
        let mut bases: Vec<PathBuf> = self.groups.iter().map(|g| g.base.clone()).collect();
        bases.dedup();
        bases
    }

    fn other_generations(&self) -> Vec<(PathBuf, u64)> {
        let ours: Vec<&Path> = self.dirs().collect();
        self.bases()
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
                dirs.retain(|dir| match fs::remove(dir) {
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
                for pid in dirs.iter().flat_map(|dir| fs::tasks(dir)) {
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
    fn remove_created(&mut self) {
        for group in self.groups.drain(..).rev() {
            let _ = fs::remove(&group.dir);
        }
    }
}

impl MemoryState {
    fn check(&mut self, prison: &str, events: &mut Vec<String>) {
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

/// Where the prison's v2 cgroup goes when it needs controllers, and what that cgroup offers.
///
/// cgroup v2 hands controllers only to the children of a cgroup without processes (the
/// root excepted), and httpd is in its own cgroup. So the prison's cgroup goes beside httpd's,
/// in the parent, which must be delegated to httpd (systemd: `Delegate=yes` marks the unit's
/// cgroup with the `trusted.delegate` xattr; `DelegateSubgroup=main` puts httpd in a leaf).
fn v2_facts(v2: &Hierarchy) -> Result<V2Facts, SetupError> {
    let step = "choosing where the prison's cgroup v2 goes";
    let base = if v2.own == v2.mount {
        v2.own.clone()
    } else {
        match v2.own.parent() {
            Some(parent) if fs::delegated(parent) => parent.to_owned(),
            _ if fs::delegated(&v2.own) => {
                return Err(SetupError::check(
                    step,
                    format!(
                        "httpd runs in its delegated cgroup {} itself, and cgroup v2 gives no \
                         controller to the children of a cgroup that holds processes; run httpd \
                         in a subgroup (systemd >= 254: DelegateSubgroup=main in httpd's unit)",
                        v2.own.display()
                    ),
                ))
            }
            _ => {
                return Err(SetupError::check(
                    step,
                    format!(
                        "httpd's cgroup {} is not delegated to httpd (no trusted.delegate xattr \
                         on it or its parent), so systemd owns it and may undo the prison's \
                         limits; add Delegate=yes and DelegateSubgroup=main to httpd's unit \
                         (e.g. a drop-in for apache2.service)",
                        v2.own.display()
                    ),
                ))
            }
        }
    };
    let words = |file: &str| -> Result<_, SetupError> {
        Ok(fs::read(&base.join(file))?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    };
    Ok(V2Facts {
        available: words("cgroup.controllers")?,
        enabled: words("cgroup.subtree_control")?,
        base,
    })
}

/// Adds what to do about `errno` to the error's step.
fn hint(e: SetupError, errno: i32, what: &str) -> SetupError {
    if e.source.raw_os_error() == Some(errno) {
        SetupError {
            step: format!("{} ({what})", e.step),
            source: e.source,
        }
    } else {
        e
    }
}
