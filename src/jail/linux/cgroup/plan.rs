//! What the prison's cgroups are: which directories to create, which controllers to enable
//! and which files to write with which values, in order. Pure: computed once in the parent from
//! the prison's limits, the [`Layout`] and the few facts read from the v2 hierarchy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::layout::{Controller, Hierarchy, Layout};
use crate::config::CpuSet;

/// The prison's limits in cgroup terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_report: Option<u64>,
    pub memory_deny: Option<u64>,
    /// PrisonCPU; written in the kernel's list form.
    pub cpus: Option<CpuSet>,
    /// PrisonProcesses: the tasks the prison may hold beyond httpd's own children.
    pub processes: Option<u64>,
    /// Room for httpd's own children of a generation and their threads (the MPM's ceiling),
    /// added to `processes` in `pids.max`: joining a cgroup is not checked against
    /// `pids.max`, so children that filled it would leave no fork to the prison.
    pub httpd_tasks: u64,
}

impl Limits {
    /// `pids.max`, when PrisonProcesses is set.
    pub fn pids_max(&self) -> Option<u64> {
        self.processes.map(|n| n.saturating_add(self.httpd_tasks))
    }
}

impl Limits {
    /// The controllers these limits need.
    pub fn controllers(&self) -> Vec<Controller> {
        let memory = self.memory_report.is_some() || self.memory_deny.is_some();
        [
            (memory, Controller::Memory),
            (self.cpus.is_some(), Controller::Cpuset),
            (self.processes.is_some(), Controller::Pids),
        ]
        .into_iter()
        .filter_map(|(needed, c)| needed.then_some(c))
        .collect()
    }
}

/// cgroup v1 or v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1(Controller),
    V2,
}

/// A value to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    /// A CPU list (cpuset.cpus), formatted only when written.
    Cpus(CpuSet),
    /// The same file's value in the base cgroup (v1 cpuset.mems must be set, and a subset of
    /// the parent's, before a task may join).
    FromBase,
}

/// One file of the prison's cgroup and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub file: &'static str,
    pub value: Value,
}

/// One cgroup directory of the prison (one per v1 hierarchy, one on v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub version: Version,
    /// The cgroup it is created under (httpd's own, or on v2 its delegated parent).
    pub base: PathBuf,
    /// `base/<leaf>`.
    pub dir: PathBuf,
    /// v2: controllers to switch on in `base/cgroup.subtree_control` ("+memory"), before mkdir.
    pub enable: Vec<&'static str>,
    /// Written in this order after mkdir and before anyone joins.
    pub settings: Vec<Setting>,
}

/// How the memory report and the OOM kills are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryWatch {
    pub version: Version,
    pub dir: PathBuf,
    pub report: Option<u64>,
    pub deny: Option<u64>,
}

/// Everything to create for one generation of the prison.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub memory: Option<MemoryWatch>,
}

/// Facts read from the v2 hierarchy, when some controller must come from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct V2Facts {
    /// The cgroup the prison's v2 cgroup goes under (see [`super::fs`] for how it is chosen).
    pub base: PathBuf,
    /// `base/cgroup.controllers`: what the base may hand to its children.
    pub available: BTreeSet<String>,
    /// `base/cgroup.subtree_control`: what it already hands down.
    pub enabled: BTreeSet<String>,
}

/// Why the limits cannot be planned on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{directive} needs the cgroup {controller} controller, but no cgroup v1 {controller} hierarchy is mounted and there is no cgroup v2 hierarchy")]
    NoHierarchy {
        controller: Controller,
        directive: &'static str,
    },
    #[error("{directive} needs the cgroup {controller} controller, but {base}/cgroup.controllers offers only {available:?}: it is bound to an unmounted v1 hierarchy or not delegated to httpd's cgroup (systemd: Delegate=yes)")]
    NotDelegated {
        controller: Controller,
        directive: &'static str,
        base: String,
        available: String,
    },
}

/// The v1 hierarchy of each controller, the rest from v2.
pub fn split(limits: &Limits, layout: &Layout) -> (Vec<(Controller, Hierarchy)>, Vec<Controller>) {
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for controller in limits.controllers() {
        match layout.v1.get(&controller) {
            Some(h) => v1.push((controller, h.clone())),
            None => v2.push(controller),
        }
    }
    (v1, v2)
}

/// Plans the prison's cgroups named `leaf`. `v2` must be given when [`split`] left controllers
/// for v2.
pub fn plan(
    limits: &Limits,
    layout: &Layout,
    v2: Option<&V2Facts>,
    leaf: &str,
) -> Result<Plan, PlanError> {
    let (v1, v2_controllers) = split(limits, layout);
    let mut plan = Plan::default();
    for (controller, hierarchy) in v1 {
        let version = Version::V1(controller);
        let dir = hierarchy.own.join(leaf);
        if controller == Controller::Memory {
            plan.memory = Some(memory_watch(limits, version, &dir));
        }
        plan.groups.push(Group {
            version,
            base: hierarchy.own.clone(),
            dir,
            enable: Vec::new(),
            settings: settings(limits, version, controller),
        });
    }
    if v2_controllers.is_empty() {
        return Ok(plan);
    }
    let Some(facts) = v2 else {
        let controller = v2_controllers[0];
        return Err(PlanError::NoHierarchy {
            controller,
            directive: controller.directive(),
        });
    };
    let mut group = Group {
        version: Version::V2,
        base: facts.base.clone(),
        dir: facts.base.join(leaf),
        enable: Vec::new(),
        settings: Vec::new(),
    };
    for controller in v2_controllers {
        if !facts.available.contains(controller.name()) {
            return Err(PlanError::NotDelegated {
                controller,
                directive: controller.directive(),
                base: facts.base.display().to_string(),
                available: facts
                    .available
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            });
        }
        if !facts.enabled.contains(controller.name()) {
            group.enable.push(controller.name());
        }
        group
            .settings
            .extend(settings(limits, Version::V2, controller));
        if controller == Controller::Memory {
            plan.memory = Some(memory_watch(limits, Version::V2, &group.dir));
        }
    }
    plan.groups.push(group);
    Ok(plan)
}

fn memory_watch(limits: &Limits, version: Version, dir: &Path) -> MemoryWatch {
    MemoryWatch {
        version,
        dir: dir.to_owned(),
        report: limits.memory_report,
        deny: limits.memory_deny,
    }
}

fn settings(limits: &Limits, version: Version, controller: Controller) -> Vec<Setting> {
    let v1 = matches!(version, Version::V1(_));
    let text = |file, value: String| Setting {
        file,
        value: Value::Text(value),
    };
    match controller {
        Controller::Memory => limits
            .memory_deny
            .map(|deny| {
                let file = if v1 {
                    "memory.limit_in_bytes"
                } else {
                    "memory.max"
                };
                text(file, deny.to_string())
            })
            .into_iter()
            .collect(),
        Controller::Cpuset => {
            let cpus = Setting {
                file: "cpuset.cpus",
                value: Value::Cpus(limits.cpus.clone().unwrap_or_default()),
            };
            if v1 {
                // v1: both must be set before a task may join (ENOSPC otherwise), mems first.
                vec![
                    Setting {
                        file: "cpuset.mems",
                        value: Value::FromBase,
                    },
                    cpus,
                ]
            } else {
                // v2: an empty cpuset.mems inherits the parent's.
                vec![cpus]
            }
        }
        Controller::Pids => vec![text(
            "pids.max",
            limits.pids_max().unwrap_or_default().to_string(),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_limits() -> Limits {
        Limits {
            memory_report: Some(64 << 20),
            memory_deny: Some(128 << 20),
            cpus: Some(CpuSet::parse("1").unwrap()),
            processes: Some(100),
            // Room for httpd's children, on top of PrisonProcesses in pids.max.
            httpd_tasks: 20,
        }
    }

    fn files(group: &Group) -> Vec<(&str, Value)> {
        group
            .settings
            .iter()
            .map(|s| (s.file, s.value.clone()))
            .collect()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn cpus(list: &str) -> Value {
        Value::Cpus(CpuSet::parse(list).unwrap())
    }

    const HYBRID_MOUNTS: &str = "\
34 31 0:31 / /cg/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /cg/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /cg/unified rw - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str = "8:pids:/\n4:memory:/api/x\n3:cpuset:/\n0::/\n";

    #[test]
    fn v1_one_group_per_hierarchy_mems_before_cpus() {
        let layout = Layout::parse(HYBRID_MOUNTS, HYBRID_OWN);
        let plan = plan(&all_limits(), &layout, None, "prison-www.3").unwrap();
        let dirs: Vec<_> = plan.groups.iter().map(|g| g.dir.clone()).collect();
        assert_eq!(
            dirs,
            [
                PathBuf::from("/cg/memory/api/x/prison-www.3"),
                "/cg/cpuset/prison-www.3".into(),
                "/cg/pids/prison-www.3".into()
            ]
        );
        assert_eq!(
            files(&plan.groups[0]),
            [("memory.limit_in_bytes", text("134217728"))]
        );
        assert_eq!(
            files(&plan.groups[1]),
            [("cpuset.mems", Value::FromBase), ("cpuset.cpus", cpus("1"))]
        );
        assert_eq!(files(&plan.groups[2]), [("pids.max", text("120"))]);
        assert!(plan.groups.iter().all(|g| g.enable.is_empty()));
        let watch = plan.memory.unwrap();
        assert_eq!(watch.version, Version::V1(Controller::Memory));
        assert_eq!(watch.dir, Path::new("/cg/memory/api/x/prison-www.3"));
        assert_eq!(watch.report, Some(64 << 20));
    }

    #[test]
    fn only_what_is_configured() {
        let layout = Layout::parse(HYBRID_MOUNTS, HYBRID_OWN);
        let limits = Limits {
            processes: Some(7),
            ..Limits::default()
        };
        let plan = plan(&limits, &layout, None, "p.1").unwrap();
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.groups[0].version, Version::V1(Controller::Pids));
        assert_eq!(plan.memory, None);
        // Report only: a memory cgroup to watch, no limit written.
        let limits = Limits {
            memory_report: Some(1 << 20),
            ..Limits::default()
        };
        let plan = super::plan(&limits, &layout, None, "p.1").unwrap();
        assert_eq!(plan.groups[0].settings, []);
        assert_eq!(plan.memory.unwrap().deny, None);
        let plan = super::plan(&Limits::default(), &layout, None, "p.1").unwrap();
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn v2_one_group_enabling_missing_controllers() {
        let layout = Layout::parse(
            "30 23 0:26 / /cg rw - cgroup2 cgroup2 rw\n",
            "0::/system.slice/apache2.service/main\n",
        );
        let facts = V2Facts {
            base: "/cg/system.slice/apache2.service".into(),
            available: ["cpuset", "memory", "pids", "io"].map(String::from).into(),
            enabled: ["memory".to_owned()].into(),
        };
        let plan = plan(&all_limits(), &layout, Some(&facts), "prison-www.1").unwrap();
        assert_eq!(plan.groups.len(), 1);
        let group = &plan.groups[0];
        assert_eq!(group.version, Version::V2);
        assert_eq!(
            group.dir,
            Path::new("/cg/system.slice/apache2.service/prison-www.1")
        );
        assert_eq!(group.enable, ["cpuset", "pids"]);
        assert_eq!(
            files(group),
            [
                ("memory.max", text("134217728")),
                ("cpuset.cpus", cpus("1")),
                ("pids.max", text("120"))
            ]
        );
        assert_eq!(plan.memory.unwrap().version, Version::V2);
    }

    #[test]
    fn hybrid_takes_v1_first_and_v2_for_the_rest() {
        // pids not mounted on v1, but offered on v2.
        let mounts = "35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /cg/unified rw - cgroup2 cgroup2 rw\n";
        let layout = Layout::parse(mounts, "4:memory:/\n0::/h\n");
        let facts = V2Facts {
            base: "/cg/unified/h".into(),
            available: ["pids".to_owned()].into(),
            enabled: BTreeSet::new(),
        };
        let limits = Limits {
            memory_deny: Some(1 << 30),
            processes: Some(9),
            ..Limits::default()
        };
        let plan = plan(&limits, &layout, Some(&facts), "p.2").unwrap();
        assert_eq!(plan.groups[0].version, Version::V1(Controller::Memory));
        assert_eq!(plan.groups[1].version, Version::V2);
        assert_eq!(plan.groups[1].enable, ["pids"]);
        assert_eq!(files(&plan.groups[1]), [("pids.max", text("9"))]);
    }

    #[test]
    fn missing_controllers_are_named_with_the_fix() {
        // This VM's unified mount offers no memory: it is bound to v1, which is not mounted here.
        let layout = Layout::parse(
            "41 31 0:38 / /cg/unified rw - cgroup2 cgroup2 rw\n",
            "0::/h\n",
        );
        let facts = V2Facts {
            base: "/cg/unified/h".into(),
            available: ["hugetlb".to_owned()].into(),
            enabled: BTreeSet::new(),
        };
        let limits = Limits {
            memory_deny: Some(1),
            ..Limits::default()
        };
        let err = plan(&limits, &layout, Some(&facts), "p.1").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("PrisonMemory needs the cgroup memory controller"),
            "{text}"
        );
        assert!(text.contains("/cg/unified/h/cgroup.controllers"), "{text}");
        assert!(text.contains("Delegate=yes"), "{text}");
        let err = plan(&limits, &Layout::default(), None, "p.1").unwrap_err();
        assert!(matches!(err, PlanError::NoHierarchy { .. }), "{err}");
    }
}
