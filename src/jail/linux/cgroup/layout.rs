//! Where httpd's cgroups are: the hierarchies mounted on this host (v1, v2 or both, "hybrid")
//! and httpd's own cgroup in each, read from the text of `/proc/self/mountinfo` and
//! `/proc/self/cgroup`. Pure: the tests feed it fabricated text naming fabricated trees.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The controllers the prison's limits need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Cpuset,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpuset, Controller::Pids];

    /// The kernel's name, as in mount options, `/proc/self/cgroup` and `cgroup.controllers`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpuset => "cpuset",
            Controller::Pids => "pids",
        }
    }

    /// The directive that needs it, for error messages.
    pub fn directive(self) -> &'static str {
        match self {
            Controller::Memory => "PrisonMemory",
            Controller::Cpuset => "PrisonCPU",
            Controller::Pids => "PrisonProcesses",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One mounted hierarchy and httpd's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted.
    pub mount: PathBuf,
    /// httpd's own cgroup, as a directory under `mount`.
    pub own: PathBuf,
}

/// The host's cgroup layout as httpd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// v1 hierarchies of the controllers we use (a v1-bound controller is unusable on v2).
    pub v1: BTreeMap<Controller, Hierarchy>,
    /// The cgroup2 hierarchy, if mounted.
    pub v2: Option<Hierarchy>,
}

/// What kind of host this is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only cgroup v1 hierarchies.
    V1,
    /// Only cgroup2 ("unified").
    V2,
    /// v1 controllers and a cgroup2 mount side by side (e.g. `/sys/fs/cgroup/unified`).
    Hybrid,
    /// No cgroup filesystem is mounted.
    None,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::V1 => "cgroup v1",
            Kind::V2 => "cgroup v2",
            Kind::Hybrid => "hybrid, cgroup v1 controllers and cgroup v2",
            Kind::None => "no cgroup filesystem mounted",
        })
    }
}

impl Layout {
    /// Parses the text of `/proc/self/mountinfo` and `/proc/self/cgroup`. Mounts whose root
    /// does not contain httpd's cgroup (a bind mount of another subtree) are skipped.
    pub fn parse(mountinfo: &str, own_cgroups: &str) -> Layout {
        // Own path per v1 controller name, and the v2 path.
        let mut v1_paths: BTreeMap<&str, &str> = BTreeMap::new();
        let mut v2_path = None;
        for line in own_cgroups.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                v2_path = Some(path);
            } else {
                for controller in controllers.split(',') {
                    v1_paths.insert(controller, path);
                }
            }
        }

        let mut layout = Layout::default();
        for line in mountinfo.lines() {
            let Some((before, after)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = before.split(' ').collect();
            let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
                continue;
            };
            let mut after = after.split(' ');
            let (fstype, _source, options) = (after.next(), after.next(), after.next());
            match fstype {
                Some("cgroup") => {
                    let options = options.unwrap_or_default();
                    for controller in Controller::ALL {
                        let bound = options.split(',').any(|o| o == controller.name());
                        if !bound || layout.v1.contains_key(&controller) {
                            continue;
                        }
                        let own = v1_paths
                            .get(controller.name())
                            .and_then(|path| own_dir(root, mount, path));
                        if let Some(own) = own {
                            layout.v1.insert(controller, hierarchy(mount, own));
                        }
                    }
                }
                Some("cgroup2") if layout.v2.is_none() => {
                    if let Some(own) = v2_path.and_then(|path| own_dir(root, mount, path)) {
                        layout.v2 = Some(hierarchy(mount, own));
                    }
                }
                _ => {}
            }
        }
        layout
    }

    pub fn kind(&self) -> Kind {
        match (self.v1.is_empty(), self.v2.is_some()) {
            (false, true) => Kind::Hybrid,
            (false, false) => Kind::V1,
            (true, true) => Kind::V2,
            (true, false) => Kind::None,
        }
    }
}

fn hierarchy(mount: &str, own: PathBuf) -> Hierarchy {
    Hierarchy {
        mount: PathBuf::from(unescape(mount)),
        own,
    }
}

/// httpd's cgroup `path` (from /proc/self/cgroup) as a directory, given the mount's `root`
/// within the hierarchy. `None` if the mount does not show that cgroup.
fn own_dir(root: &str, mount: &str, path: &str) -> Option<PathBuf> {
    let root = unescape(root);
    // A process in a cgroup that is being removed shows " (deleted)"; there is nothing to use.
    if path.ends_with(" (deleted)") {
        return None;
    }
    let relative = Path::new(path).strip_prefix(&root).ok()?;
    Some(Path::new(&unescape(mount)).join(relative))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This VM: systemd's hybrid layout, httpd in a nested memcg.
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/091f
3:cpuset:/
1:cpu:/
0::/system.slice/apache2.service
";

    #[test]
    fn hybrid_has_v1_controllers_and_a_v2_mount() {
        let layout = Layout::parse(HYBRID_MOUNTS, HYBRID_OWN);
        assert_eq!(layout.kind(), Kind::Hybrid);
        assert_eq!(
            layout.v1[&Controller::Memory],
            Hierarchy {
                mount: "/sys/fs/cgroup/memory".into(),
                own: "/sys/fs/cgroup/memory/process_api/091f".into()
            }
        );
        assert_eq!(
            layout.v1[&Controller::Cpuset].own,
            Path::new("/sys/fs/cgroup/cpuset")
        );
        assert_eq!(
            layout.v1[&Controller::Pids].own,
            Path::new("/sys/fs/cgroup/pids")
        );
        assert_eq!(
            layout.v2.unwrap().own,
            Path::new("/sys/fs/cgroup/unified/system.slice/apache2.service")
        );
    }

    #[test]
    fn pure_v2() {
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = Layout::parse(mounts, "0::/system.slice/apache2.service/main\n");
        assert_eq!(layout.kind(), Kind::V2);
        assert!(layout.v1.is_empty());
        assert_eq!(
            layout.v2.unwrap().own,
            Path::new("/sys/fs/cgroup/system.slice/apache2.service/main")
        );
    }

    #[test]
    fn pure_v1_with_controllers_sharing_a_hierarchy() {
        let mounts = "\
25 20 0:22 / /cg/mem\\040ory rw - cgroup cgroup rw,memory
26 20 0:23 / /cg/cpu rw - cgroup cgroup rw,cpuset,cpu,cpuacct
";
        let own = "3:cpuset,cpu,cpuacct:/web\n2:memory:/web\n";
        let layout = Layout::parse(mounts, own);
        assert_eq!(layout.kind(), Kind::V1);
        assert_eq!(
            layout.v1[&Controller::Memory].own,
            Path::new("/cg/mem ory/web")
        );
        assert_eq!(layout.v1[&Controller::Cpuset].own, Path::new("/cg/cpu/web"));
        // pids is not mounted: it is simply absent, and the plan says so if it is needed.
        assert!(!layout.v1.contains_key(&Controller::Pids));
    }

    #[test]
    fn a_mount_of_another_subtree_is_skipped() {
        // A container's bind mount of /lxc/c1 does not show httpd's cgroup /web.
        let mounts = "\
25 20 0:22 /lxc/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
26 20 0:22 / /mnt/memory rw - cgroup cgroup rw,memory
";
        let layout = Layout::parse(mounts, "4:memory:/web\n");
        assert_eq!(
            layout.v1[&Controller::Memory].own,
            Path::new("/mnt/memory/web")
        );
        // Inside a cgroup namespace the root is "/" and the path relative: used as is.
        let layout = Layout::parse(
            "25 20 0:22 /lxc/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "4:memory:/lxc/c1/web\n",
        );
        assert_eq!(
            layout.v1[&Controller::Memory].own,
            Path::new("/sys/fs/cgroup/memory/web")
        );
    }

    #[test]
    fn nothing_mounted_and_garbage() {
        let layout = Layout::parse("garbage\n1 2 3\n", "nonsense\n");
        assert_eq!(layout.kind(), Kind::None);
        let layout = Layout::parse(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/gone (deleted)\n",
        );
        assert_eq!(layout.kind(), Kind::None);
    }
}
