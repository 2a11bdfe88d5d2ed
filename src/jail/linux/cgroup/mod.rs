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
//!
//! This file sequences a generation's life; each step has its own file: `layout` (parsing
//! where the hierarchies are), `discover` (reading that and the v2 facts from the host),
//! `plan` (what to create and write, pure), `apply` (mkdir, write, join), `monitor` (memory
//! report, OOM and pids events), `cleanup` (removing stale, earlier and all generations) and
//! `fs` (the cgroupfs operations).

mod apply;
mod cleanup;
mod discover;
mod fs;
pub mod layout;
mod monitor;
pub mod plan;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::jail::SetupError;
use cleanup::PREFIX;
use layout::{Controller, Layout};
use monitor::{MemoryState, PidsState};
use plan::{Group, MemoryWatch, Plan, Version};

pub use plan::Limits;

impl Limits {
    /// The limits of `prison` that cgroups enforce, with room for `httpd_tasks` of httpd's own
    /// children and their threads on top of PrisonProcesses.
    pub fn of(prison: &crate::config::Prison, httpd_tasks: u64) -> Self {
        Self {
            memory_report: prison.memory.report,
            memory_deny: prison.memory.deny,
            cpus: prison.cpus.clone(),
            processes: prison.processes,
            httpd_tasks,
        }
    }
}

/// The prison's cgroups of one generation, as created by the parent.
#[derive(Debug)]
pub struct Cgroups {
    prison: String,
    proc_root: PathBuf,
    /// Where cgroups are made and removed: the kernel's cgroupfs (the tests fabricate one).
    tree: &'static dyn fs::Tree,
    layout: Option<Layout>,
    /// `prison-<name>.<n>`, once any cgroup exists.
    leaf: Option<String>,
    /// The previous generation's leaf at a restart: children forked for it just before the
    /// restart may still be on their way in, so building this generation leaves it alone even
    /// when it looks empty (the monitor removes it later).
    predecessor: Option<String>,
    /// When this generation was built: the monitor spares the predecessor for
    /// `PREDECESSOR_GRACE` after it, for the same reason.
    built: Instant,
    /// Created, limits written, in creation order; every child joins each.
    groups: Vec<Group>,
    memory: Option<MemoryState>,
    pids: Option<PidsState>,
}

impl Cgroups {
    /// Parent, root: creates this generation's cgroups for `limits` and writes the limits,
    /// at a restart whose previous generation used the leaf `predecessor` (see
    /// [`Cgroups::leaf`]). `proc_root` is `/proc`.
    pub fn create_after(
        prison: &str,
        limits: &Limits,
        proc_root: &Path,
        predecessor: Option<&str>,
    ) -> Result<Self, SetupError> {
        Self::create_in(&fs::Kernel, prison, limits, proc_root, predecessor)
    }

    /// `create_after` in the cgroup filesystem `tree`, with `/proc` at `proc_root`.
    fn create_in(
        tree: &'static dyn fs::Tree,
        prison: &str,
        limits: &Limits,
        proc_root: &Path,
        predecessor: Option<&str>,
    ) -> Result<Self, SetupError> {
        let mut this = Self {
            prison: prison.to_owned(),
            proc_root: proc_root.to_owned(),
            tree,
            layout: None,
            leaf: None,
            predecessor: predecessor.map(str::to_owned),
            built: Instant::now(),
            groups: Vec::new(),
            memory: None,
            pids: None,
        };
        if limits.controllers().is_empty() {
            // Still looked at, so the monitor and teardown find earlier generations that had
            // limits; a host without cgroups is no error here.
            let _ = this.layout();
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

    /// The dry run of `create_after` and `v2_dir` (`apachectl -t`): discovers the layout and
    /// plans every cgroup the limits need (each controller's hierarchy, delegation on v2) and,
    /// with `needs_v2` (PrisonIP), the cgroup2 directory; creates and writes nothing. Returns
    /// what it found, for the log.
    pub fn check(
        prison: &str,
        limits: &Limits,
        proc_root: &Path,
        needs_v2: bool,
    ) -> Result<String, SetupError> {
        let step = format!("checking the cgroups of prison {prison}");
        if limits.controllers().is_empty() && !needs_v2 {
            return Ok("no cgroup needed".to_owned());
        }
        let layout = discover::layout(proc_root)?;
        let plan_step = format!("{step} (cgroup layout: {})", layout.kind());
        let (_, planned) = plan_on(limits, &layout, &plan_step, |_| {
            format!("{PREFIX}{prison}.0")
        })?;
        let mut bases: Vec<&Path> = planned.groups.iter().map(|g| g.base.as_path()).collect();
        if needs_v2 {
            let Some(v2) = &layout.v2 else {
                return Err(SetupError::check(
                    step,
                    "PrisonIP needs a cgroup2 hierarchy for its socket programs, and none is \
                     mounted (mount it, e.g. at /sys/fs/cgroup/unified)",
                ));
            };
            bases.push(&v2.own);
        }
        for base in &bases {
            if !base.is_dir() {
                return Err(SetupError::check(
                    step,
                    format!("httpd's cgroup {} does not exist", base.display()),
                ));
            }
        }
        Ok(format!(
            "cgroups under {} (layout {})",
            bases
                .iter()
                .map(|b| b.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            layout.kind()
        ))
    }

    /// Parent, root, at a restart whose new prison could not be built: the previous
    /// generation's cgroups `dirs` (leaf `leaf`, made for `limits`), for the new generation's
    /// children to join. Nothing is created or written; each cgroup must still exist. The
    /// monitor starts from the events counted so far (the previous generation logged those).
    pub fn adopt(
        prison: &str,
        limits: &Limits,
        proc_root: &Path,
        leaf: Option<&str>,
        dirs: &[(Version, PathBuf)],
    ) -> Result<Self, SetupError> {
        let mut this = Self {
            prison: prison.to_owned(),
            proc_root: proc_root.to_owned(),
            tree: &fs::Kernel,
            layout: None,
            leaf: leaf.map(str::to_owned),
            predecessor: None,
            built: Instant::now(),
            groups: Vec::new(),
            memory: None,
            pids: None,
        };
        let _ = this.layout();
        for (version, dir) in dirs {
            if !dir.join("cgroup.procs").is_file() {
                return Err(SetupError::check(
                    format!("taking over the cgroups of prison {prison}"),
                    format!("{} is gone", dir.display()),
                ));
            }
            this.groups.push(Group {
                version: *version,
                base: dir.parent().map(Path::to_owned).unwrap_or_default(),
                dir: dir.clone(),
                enable: Vec::new(),
                settings: Vec::new(),
            });
        }
        let holding = |controller: Controller| {
            this.groups
                .iter()
                .find(|g| matches!(g.version, Version::V1(c) if c == controller))
                .or_else(|| this.groups.iter().find(|g| g.version == Version::V2))
                .map(|g| (g.version, g.dir.clone()))
        };
        let memory = limits.memory_report.is_some() || limits.memory_deny.is_some();
        if let Some((version, dir)) = holding(Controller::Memory).filter(|_| memory) {
            let threshold = match (version, limits.memory_report) {
                (Version::V1(_), Some(report)) => Some(fs::memory_threshold(&dir, report)?),
                _ => None,
            };
            let (file, peak) = match version {
                Version::V1(_) => ("memory.oom_control", 0),
                Version::V2 => (
                    "memory.events",
                    fs::number(&dir.join("memory.peak")).unwrap_or(0),
                ),
            };
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            let usage = match version {
                Version::V1(_) => "memory.usage_in_bytes",
                Version::V2 => "memory.current",
            };
            let above = limits
                .memory_report
                .is_some_and(|r| fs::number(&dir.join(usage)).unwrap_or(0) >= r);
            this.memory = Some(MemoryState {
                watch: MemoryWatch {
                    version,
                    dir,
                    report: limits.memory_report,
                    deny: limits.memory_deny,
                },
                threshold,
                above,
                oom_kills: fs::counter(&text, "oom_kill").unwrap_or(0),
                peak,
            });
        }
        if let (Some(beyond), Some(max)) = (limits.processes, limits.pids_max()) {
            if let Some((_, dir)) = holding(Controller::Pids) {
                // Room for this generation's children beside the previous one's, which are
                // in the same cgroup until they finish.
                fs::write(&dir.join("pids.max"), &max.to_string())?;
                let text = std::fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
                this.pids = Some(PidsState {
                    refused: fs::counter(&text, "max").unwrap_or(0),
                    dir,
                    beyond,
                    max,
                });
            }
        }
        Ok(this)
    }

    /// The cgroups every child joins, with their hierarchy: what a restart carries.
    pub fn joined(&self) -> impl Iterator<Item = (Version, &Path)> {
        self.groups.iter().map(|g| (g.version, g.dir.as_path()))
    }

    /// After a failed build: removes the cgroups this build created (nobody joined them),
    /// and nothing of any other generation.
    pub fn discard(mut self) {
        self.remove_created();
    }

    fn create_groups(&mut self, limits: &Limits) -> Result<(), SetupError> {
        let layout = self.layout()?.clone();
        let step = format!(
            "creating the cgroups of prison {} (cgroup layout: {})",
            self.prison,
            layout.kind()
        );
        let (leaf, plan) = plan_on(limits, &layout, &step, |planned| {
            let mut bases = self.all_bases();
            bases.extend(planned);
            bases.sort();
            bases.dedup();
            self.next_leaf(&bases)
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
        if let (Some(beyond), Some(max)) = (limits.processes, limits.pids_max()) {
            let dir = self
                .groups
                .iter()
                .find(|g| g.settings.iter().any(|s| s.file == "pids.max"));
            self.pids = dir.map(|g| PidsState {
                dir: g.dir.clone(),
                beyond,
                max,
                refused: 0,
            });
        }
        Ok(())
    }

    fn layout(&mut self) -> Result<&Layout, SetupError> {
        if self.layout.is_none() {
            self.layout = Some(discover::layout(&self.proc_root)?);
        }
        Ok(self.layout.get_or_insert_with(Layout::default))
    }

    /// Parent: the prison's cgroup on the v2 hierarchy, created (without controllers) if no
    /// limit needed one: PrisonIP attaches its cgroup-BPF programs there. On a hybrid host it
    /// lies under `/sys/fs/cgroup/unified`. Call it in `Prepared::build`, before any child
    /// starts: every child joins every cgroup that exists then.
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
            None => self.next_leaf(&self.all_bases()),
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

    /// This generation's leaf (`prison-<name>.<n>`), if it made any cgroup: what the next
    /// generation must not remove while building (see `create_after`).
    pub fn leaf(&self) -> Option<&str> {
        self.leaf.as_deref()
    }

    /// The cgroup directories every child joins (for the tests and the log).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.groups.iter().map(|g| g.dir.as_path())
    }

    /// Parent, periodically: what happened since the last look, one line per event for the
    /// error log. Also removes earlier generations whose last task is gone.
    pub fn monitor(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        if let Some(memory) = &mut self.memory {
            memory.check(&self.prison, &mut events);
        }
        if let Some(pids) = &mut self.pids {
            pids.check(&self.prison, &self.proc_root, &mut events);
        }
        self.remove_empty_others();
        events
    }
}

/// The one plan for `limits` on `layout`: reads the v2 facts if a v2 cgroup needs
/// controllers, then plans under the leaf that `leaf` names, given the cgroups the plan
/// creates under (where a leaf must not collide with an earlier generation's). A plan error is
/// a check error of `step`.
fn plan_on(
    limits: &Limits,
    layout: &Layout,
    step: &str,
    leaf: impl FnOnce(Vec<PathBuf>) -> String,
) -> Result<(String, Plan), SetupError> {
    let (v1, v2_needed) = plan::split(limits, layout);
    let facts = match (&layout.v2, v2_needed.is_empty()) {
        (Some(v2), false) => Some(discover::v2_facts(v2)?),
        _ => None,
    };
    let bases = v1.iter().map(|(_, h)| h.own.clone());
    let leaf = leaf(bases.chain(facts.iter().map(|f| f.base.clone())).collect());
    let plan = plan::plan(limits, layout, facts.as_ref(), &leaf)
        .map_err(|e| SetupError::check(step, e.to_string()))?;
    Ok((leaf, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    /// A fabricated host in a temporary directory: `proc/self/{mountinfo,cgroup}` naming
    /// cgroup "mounts" that are plain directories under it. Removed on drop.
    struct Host(PathBuf);

    impl Host {
        fn new(test: &str, mounts: &[(&str, &str)], own: &str) -> Host {
            let root = std::env::temp_dir()
                .join(format!("mod_prison-cgroup-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("proc/self")).unwrap();
            let mut mountinfo = String::new();
            for (i, (dir, fs_and_options)) in mounts.iter().enumerate() {
                let mount = root.join(dir);
                std::fs::create_dir_all(&mount).unwrap();
                mountinfo += &format!(
                    "{} 1 0:{i} / {} rw - {fs_and_options}\n",
                    30 + i,
                    mount.display()
                );
            }
            std::fs::write(root.join("proc/self/mountinfo"), mountinfo).unwrap();
            std::fs::write(root.join("proc/self/cgroup"), own).unwrap();
            Host(root)
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.0.join(relative)
        }

        fn write(&self, relative: &str, text: &str) {
            let path = self.path(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn read(&self, relative: &str) -> String {
            std::fs::read_to_string(self.path(relative))
                .unwrap_or_else(|e| panic!("{relative}: {e}"))
        }

        fn proc(&self) -> PathBuf {
            self.path("proc")
        }
    }

    /// The cgroupfs of a fabricated host: mkdir makes the control files the kernel would make
    /// for the hierarchy's controllers (v2: those its parent offers), and rmdir removes them
    /// with the directory unless `cgroup.procs` lists a task (EBUSY, as the kernel says).
    #[derive(Debug)]
    struct Fabricated {
        /// (mount point, v1 controllers; None for cgroup2).
        mounts: Vec<(PathBuf, Option<Vec<String>>)>,
    }

    impl Fabricated {
        /// The hierarchies that `proc_root/self/mountinfo` names; lives as long as the test.
        fn of(proc_root: &Path) -> &'static Fabricated {
            let mountinfo = std::fs::read_to_string(proc_root.join("self/mountinfo")).unwrap();
            let mounts = mountinfo
                .lines()
                .map(|line| {
                    let (left, right) = line.split_once(" - ").unwrap();
                    let point = PathBuf::from(left.split(' ').nth(4).unwrap());
                    let fields: Vec<&str> = right.split(' ').collect();
                    let v1 = (fields[0] == "cgroup").then(|| {
                        fields[2]
                            .split(',')
                            .filter(|o| !matches!(*o, "rw" | "ro"))
                            .map(str::to_owned)
                            .collect()
                    });
                    (point, v1)
                })
                .collect();
            Box::leak(Box::new(Fabricated { mounts }))
        }
    }

    impl fs::Tree for Fabricated {
        fn mkdir(&self, dir: &Path) -> std::io::Result<()> {
            std::fs::create_dir(dir)?;
            let (_, v1) = self
                .mounts
                .iter()
                .filter(|(point, _)| dir.starts_with(point))
                .max_by_key(|(point, _)| point.as_os_str().len())
                .expect("a cgroup under a fabricated mount");
            let controllers: Vec<String> = match v1 {
                Some(controllers) => controllers.clone(),
                None => std::fs::read_to_string(dir.parent().unwrap().join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            };
            let mut files = vec!["cgroup.procs"];
            if v1.is_none() {
                files.extend([
                    "cgroup.controllers",
                    "cgroup.subtree_control",
                    "cgroup.events",
                ]);
            }
            for controller in &controllers {
                files.extend(match (controller.as_str(), v1.is_some()) {
                    ("memory", true) => &[
                        "cgroup.event_control",
                        "memory.limit_in_bytes",
                        "memory.usage_in_bytes",
                        "memory.max_usage_in_bytes",
                        "memory.oom_control",
                    ][..],
                    ("memory", false) => &[
                        "memory.max",
                        "memory.current",
                        "memory.peak",
                        "memory.events",
                    ][..],
                    ("cpuset", _) => &["cpuset.cpus", "cpuset.mems"][..],
                    ("pids", _) => &["pids.max", "pids.current", "pids.events"][..],
                    _ => &[][..],
                });
            }
            for file in files {
                std::fs::write(dir.join(file), "")?;
            }
            Ok(())
        }

        fn rmdir(&self, dir: &Path) -> std::io::Result<()> {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                    if fs::tasks(dir).is_empty() {
                        std::fs::remove_dir_all(dir)
                    } else {
                        Err(std::io::Error::from_raw_os_error(libc::EBUSY))
                    }
                }
                other => other,
            }
        }
    }

    impl Cgroups {
        /// `create_after` on the fabricated host whose `/proc` is `proc_root`.
        fn fabricated(
            prison: &str,
            limits: &Limits,
            proc_root: &Path,
            predecessor: Option<&str>,
        ) -> Result<Self, SetupError> {
            let tree = Fabricated::of(proc_root);
            Self::create_in(tree, prison, limits, proc_root, predecessor)
        }

        /// A first start on the fabricated host.
        fn create(prison: &str, limits: &Limits, proc_root: &Path) -> Result<Self, SetupError> {
            Self::fabricated(prison, limits, proc_root, None)
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn hybrid(test: &str) -> Host {
        let host = Host::new(
            test,
            &[
                ("cg/memory", "cgroup cgroup rw,memory"),
                ("cg/cpuset", "cgroup cgroup rw,cpuset"),
                ("cg/pids", "cgroup cgroup rw,pids"),
                ("cg/unified", "cgroup2 cgroup2 rw"),
            ],
            "8:pids:/\n4:memory:/api/x\n3:cpuset:/\n0::/\n",
        );
        host.write("cg/cpuset/cpuset.mems", "0\n");
        std::fs::create_dir_all(host.path("cg/memory/api/x")).unwrap();
        host
    }

    fn set_xattr(dir: &Path, name: &std::ffi::CStr) -> bool {
        let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a 1-byte value that outlive the call.
        unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), c"1".as_ptr().cast(), 1, 0) == 0 }
    }

    #[test]
    fn hybrid_v1_limits_written_before_join_and_everything_removed_at_teardown() {
        let host = hybrid("v1");
        // A crashed run's empty cgroup is collected; its number is free again.
        std::fs::create_dir_all(host.path("cg/pids/prison-www.4")).unwrap();
        let limits = Limits {
            memory_report: None,
            memory_deny: Some(64 << 20),
            cpus: Some(crate::config::CpuSet::parse("1").unwrap()),
            processes: Some(50),
            httpd_tasks: 10,
        };
        let cgroups = Cgroups::create("www", &limits, &host.proc()).unwrap();
        assert!(!host.path("cg/pids/prison-www.4").exists());
        let dirs: Vec<&Path> = cgroups.dirs().collect();
        assert_eq!(
            dirs,
            [
                host.path("cg/memory/api/x/prison-www.1"),
                host.path("cg/cpuset/prison-www.1"),
                host.path("cg/pids/prison-www.1"),
            ]
        );
        assert_eq!(
            host.read("cg/memory/api/x/prison-www.1/memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(host.read("cg/cpuset/prison-www.1/cpuset.mems"), "0");
        assert_eq!(host.read("cg/cpuset/prison-www.1/cpuset.cpus"), "1");
        assert_eq!(host.read("cg/pids/prison-www.1/pids.max"), "60");
        // Nothing on v2: PrisonIP asks for it.
        assert!(!host.path("cg/unified/prison-www.1").exists());

        cgroups.join().unwrap();
        for dir in cgroups.dirs() {
            assert_eq!(
                std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
                "0"
            );
        }
        let problems = cgroups.teardown();
        assert_eq!(problems, Vec::<String>::new());
        for dir in dirs_of(&host) {
            assert!(!dir.exists(), "{}", dir.display());
        }
    }

    fn dirs_of(host: &Host) -> Vec<PathBuf> {
        [
            "cg/memory/api/x/prison-www.1",
            "cg/cpuset/prison-www.1",
            "cg/pids/prison-www.1",
            "cg/unified/prison-www.1",
        ]
        .map(|d| host.path(d))
        .into()
    }

    #[test]
    fn a_busy_earlier_generation_stays_and_the_next_number_is_used() {
        let host = hybrid("generations");
        let limits = Limits {
            processes: Some(9),
            ..Limits::default()
        };
        let old = Cgroups::create("www", &limits, &host.proc()).unwrap();
        // An old child is still inside at the graceful restart.
        host.write("cg/pids/prison-www.1/cgroup.procs", "4242\n");
        drop(old); // release: nothing removed
        let mut new = Cgroups::create("www", &limits, &host.proc()).unwrap();
        assert_eq!(
            new.dirs().collect::<Vec<_>>(),
            [host.path("cg/pids/prison-www.2")]
        );
        assert!(new.monitor().is_empty());
        assert!(host.path("cg/pids/prison-www.1").exists());
        // Its last task gone, the monitor removes it.
        host.write("cg/pids/prison-www.1/cgroup.procs", "");
        new.monitor();
        assert!(!host.path("cg/pids/prison-www.1").exists());
        assert!(host.path("cg/pids/prison-www.2").exists());
        // Another prison's generations are none of ours.
        std::fs::create_dir_all(host.path("cg/pids/prison-www2.1")).unwrap();
        assert_eq!(new.teardown(), Vec::<String>::new());
        assert!(host.path("cg/pids/prison-www2.1").exists());
    }

    #[test]
    fn a_restart_keeps_the_empty_predecessor_and_a_fresh_start_removes_it() {
        let host = hybrid("predecessor");
        let limits = Limits {
            processes: Some(9),
            ..Limits::default()
        };
        let old = Cgroups::create("www", &limits, &host.proc()).unwrap();
        let leaf = old.leaf().map(str::to_owned);
        assert_eq!(leaf.as_deref(), Some("prison-www.1"));
        drop(old);
        // Empty, but a child forked for it just before the restart may still be joining.
        let mut new = Cgroups::fabricated("www", &limits, &host.proc(), leaf.as_deref()).unwrap();
        assert!(host.path("cg/pids/prison-www.1").exists());
        assert_eq!(new.leaf(), Some("prison-www.2"));
        // Nor does the monitor right after the restart.
        new.monitor();
        assert!(host.path("cg/pids/prison-www.1").exists());
        drop(new);
        // A start with no predecessor (after a crash) removes every empty generation.
        let fresh = Cgroups::create("www", &limits, &host.proc()).unwrap();
        assert!(!host.path("cg/pids/prison-www.2").exists());
        assert_eq!(fresh.leaf(), Some("prison-www.1"));
    }

    #[test]
    fn v2_dir_for_prison_ip_on_a_hybrid_host() {
        let host = hybrid("v2dir");
        let mut cgroups = Cgroups::create("www", &Limits::default(), &host.proc()).unwrap();
        assert_eq!(cgroups.dirs().count(), 0);
        let dir = cgroups.v2_dir().unwrap();
        assert_eq!(dir, host.path("cg/unified/prison-www.1"));
        assert_eq!(cgroups.v2_dir().unwrap(), dir, "created once");
        cgroups.join().unwrap();
        assert_eq!(host.read("cg/unified/prison-www.1/cgroup.procs"), "0");
        assert!(cgroups.teardown().is_empty());
        assert!(!dir.exists());
    }

    fn pure_v2(test: &str) -> Host {
        let host = Host::new(
            test,
            &[("cg", "cgroup2 cgroup2 rw,nsdelegate")],
            "0::/system.slice/apache2.service/main\n",
        );
        host.write(
            "cg/system.slice/apache2.service/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        host.write("cg/system.slice/apache2.service/cgroup.subtree_control", "");
        host.write("cg/system.slice/apache2.service/main/cgroup.procs", "1\n");
        host
    }

    fn all_limits() -> Limits {
        Limits {
            memory_report: Some(100),
            memory_deny: Some(1000),
            cpus: Some(crate::config::CpuSet::parse("0").unwrap()),
            processes: Some(64),
            httpd_tasks: 0,
        }
    }

    #[test]
    fn v2_goes_beside_httpd_in_its_delegated_parent_and_monitors_by_polling() {
        let host = pure_v2("v2");
        let unit = host.path("cg/system.slice/apache2.service");
        assert!(
            set_xattr(&unit, c"trusted.delegate") || set_xattr(&unit, c"user.delegate"),
            "this filesystem takes no xattrs: the delegation check cannot be tested"
        );
        let mut cgroups = Cgroups::create("www", &all_limits(), &host.proc()).unwrap();
        let leaf = "cg/system.slice/apache2.service/prison-www.1";
        assert_eq!(cgroups.dirs().collect::<Vec<_>>(), [host.path(leaf)]);
        // One write per controller; the fabricated file keeps the last.
        assert_eq!(
            host.read("cg/system.slice/apache2.service/cgroup.subtree_control"),
            "+pids"
        );
        assert_eq!(host.read(&format!("{leaf}/memory.max")), "1000");
        assert_eq!(host.read(&format!("{leaf}/cpuset.cpus")), "0");
        assert_eq!(host.read(&format!("{leaf}/pids.max")), "64");
        assert_eq!(cgroups.v2_dir().unwrap(), host.path(leaf));

        // Below the report threshold: nothing.
        host.write(&format!("{leaf}/memory.current"), "50\n");
        assert_eq!(cgroups.monitor(), Vec::<String>::new());
        // Crossing: logged once, not again while it stays above.
        host.write(&format!("{leaf}/memory.current"), "150\n");
        let events = cgroups.monitor();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].contains("prison www: memory use reached 150 bytes"),
            "{events:?}"
        );
        assert!(
            events[0].contains("report threshold 100 bytes"),
            "{events:?}"
        );
        assert_eq!(cgroups.monitor(), Vec::<String>::new());
        // Down and up again: a new crossing.
        host.write(&format!("{leaf}/memory.current"), "20\n");
        assert_eq!(cgroups.monitor(), Vec::<String>::new());
        host.write(&format!("{leaf}/memory.current"), "120\n");
        assert_eq!(cgroups.monitor().len(), 1);
        // A spike between two looks shows in memory.peak.
        host.write(&format!("{leaf}/memory.current"), "20\n");
        cgroups.monitor();
        host.write(&format!("{leaf}/memory.peak"), "900\n");
        let events = cgroups.monitor();
        assert!(events[0].contains("reached 900 bytes"), "{events:?}");

        // OOM kills and refused forks, each counted once.
        host.write(
            &format!("{leaf}/memory.events"),
            "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
        );
        host.write(&format!("{leaf}/pids.events"), "max 3\n");
        let events = cgroups.monitor();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].contains("killed 2 process(es)"), "{events:?}");
        assert!(events[0].contains("deny limit 1000 bytes"), "{events:?}");
        assert!(events[1].contains("3 fork(s) refused at the PrisonProcesses limit 64"));
        assert_eq!(cgroups.monitor(), Vec::<String>::new());
        assert!(cgroups.teardown().is_empty());
        assert!(!host.path(leaf).exists());
    }

    #[test]
    fn v2_without_delegation_is_refused_with_the_fix() {
        let host = pure_v2("v2-undelegated");
        let err = Cgroups::create("www", &all_limits(), &host.proc()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is not delegated to httpd"), "{text}");
        assert!(
            text.contains("Delegate=yes and DelegateSubgroup=main"),
            "{text}"
        );
        // Delegated, but httpd sits in the delegated cgroup itself: the subgroup is missing.
        let host = Host::new(
            "v2-no-subgroup",
            &[("cg", "cgroup2 cgroup2 rw")],
            "0::/system.slice/apache2.service\n",
        );
        let unit = host.path("cg/system.slice/apache2.service");
        std::fs::create_dir_all(&unit).unwrap();
        assert!(set_xattr(&unit, c"trusted.delegate") || set_xattr(&unit, c"user.delegate"));
        let text = Cgroups::create("www", &all_limits(), &host.proc())
            .unwrap_err()
            .to_string();
        assert!(text.contains("DelegateSubgroup=main"), "{text}");
        // Limits that need no controller never look at delegation.
        assert!(Cgroups::create("www", &Limits::default(), &host.proc()).is_ok());
    }

    #[test]
    fn a_controller_the_host_lacks_is_named_and_nothing_is_left_behind() {
        // This VM's layout without the pids hierarchy: v2 offers only hugetlb.
        let host = Host::new(
            "missing",
            &[
                ("cg/memory", "cgroup cgroup rw,memory"),
                ("cg/unified", "cgroup2 cgroup2 rw"),
            ],
            "4:memory:/\n0::/\n",
        );
        host.write("cg/unified/cgroup.controllers", "hugetlb\n");
        host.write("cg/unified/cgroup.subtree_control", "");
        let text = Cgroups::create("www", &all_limits(), &host.proc())
            .unwrap_err()
            .to_string();
        assert!(text.contains("hybrid"), "{text}");
        assert!(
            text.contains("PrisonCPU needs the cgroup cpuset controller"),
            "{text}"
        );
        assert!(!host.path("cg/memory/prison-www.1").exists());
    }

    /// Every cgroup directory under the fabricated host named for prison www.
    fn prison_dirs(host: &Host) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut todo = vec![host.path("cg")];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("prison-www.")
                    {
                        found.push(entry.path());
                    }
                    todo.push(entry.path());
                }
            }
        }
        found
    }

    #[test]
    fn the_dry_run_refuses_what_create_would_and_creates_nothing() {
        // Not delegated: the same refusal as create's, and nothing made.
        let host = pure_v2("check-undelegated");
        let text = Cgroups::check("www", &all_limits(), &host.proc(), false)
            .unwrap_err()
            .to_string();
        assert!(text.contains("is not delegated to httpd"), "{text}");
        // Delegated: it passes, and still nothing is created or written.
        let unit = host.path("cg/system.slice/apache2.service");
        assert!(set_xattr(&unit, c"trusted.delegate") || set_xattr(&unit, c"user.delegate"));
        let found = Cgroups::check("www", &all_limits(), &host.proc(), true).unwrap();
        assert!(found.contains("apache2.service"), "{found}");
        assert!(prison_dirs(&host).is_empty(), "{:?}", prison_dirs(&host));
        assert_eq!(
            host.read("cg/system.slice/apache2.service/cgroup.subtree_control"),
            ""
        );
        // Negative control: create does make the leaf.
        let cgroups = Cgroups::create("www", &all_limits(), &host.proc()).unwrap();
        assert_eq!(prison_dirs(&host).len(), 1);
        assert!(cgroups.teardown().is_empty());

        // A controller the host lacks is named.
        let host = Host::new(
            "check-missing",
            &[
                ("cg/memory", "cgroup cgroup rw,memory"),
                ("cg/unified", "cgroup2 cgroup2 rw"),
            ],
            "4:memory:/\n0::/\n",
        );
        host.write("cg/unified/cgroup.controllers", "hugetlb\n");
        host.write("cg/unified/cgroup.subtree_control", "");
        let text = Cgroups::check("www", &all_limits(), &host.proc(), false)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("PrisonCPU needs the cgroup cpuset controller"),
            "{text}"
        );
        // PrisonIP without a cgroup2 hierarchy.
        let host = Host::new(
            "check-no-v2",
            &[("cg/memory", "cgroup cgroup rw,memory")],
            "4:memory:/\n",
        );
        let text = Cgroups::check("www", &Limits::default(), &host.proc(), true)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("PrisonIP needs a cgroup2 hierarchy"),
            "{text}"
        );
        assert!(Cgroups::check("www", &Limits::default(), &host.proc(), false).is_ok());
    }
}
