//! The prison's mount namespace as data: what the holder does, in order. Pure, so the order
//! and every path are unit-tested; the holder only executes it.
//!
//! Host sources are cloned as detached mount trees *before* `pivot_root` (they are host paths);
//! every target is resolved *after* it, inside the prison root, so a symlink inside PrisonDir can
//! never redirect a mount onto the host.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::config::Prison;

/// Devices every prison gets in its private `/dev` (bind mounts of the host's nodes).
pub const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// What scripts need for DNS and time; bound read-only from the host where PrisonDir lacks them.
pub const HOST_DEFAULTS: [&str; 5] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/usr/share/zoneinfo",
];

/// When a bind is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only if nothing exists at the target inside the prison (PrisonDir's own copy wins).
    IfMissing,
}

/// One host path shown inside the prison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: CString,
    pub target: CString,
    /// Ancestors of `target` to create if missing, outermost first (`/usr`, `/usr/share`).
    pub parents: Vec<CString>,
    pub source_is_dir: bool,
    pub writable: bool,
    pub when: When,
}

/// The whole mount plan of one prison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// PrisonDir (canonical host path), which becomes `/`.
    pub root: CString,
    /// Binds in the order they are attached: PrisonBind first (admin's order), then the runtime
    /// directory, then the DNS/time defaults (so a PrisonBind of /etc or /usr provides them).
    pub binds: Vec<BindMount>,
    /// Device nodes bound into the private `/dev` tmpfs.
    pub devices: Vec<CString>,
    pub hostname: CString,
}

/// Host facts the plan needs: is this host path a directory, does it exist.
pub trait HostView {
    fn kind(&self, path: &Path) -> Option<bool>;
}

/// The real host.
#[derive(Debug)]
pub struct RealHost;

impl HostView for RealHost {
    fn kind(&self, path: &Path) -> Option<bool> {
        std::fs::metadata(path).ok().map(|m| m.is_dir())
    }
}

/// A path with an interior NUL cannot come from httpd's config; refuse rather than truncate.
fn c_path(path: &Path) -> Result<CString, String> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))
}

fn parents_of(path: &Path) -> Result<Vec<CString>, String> {
    let mut parents: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .filter(|p| *p != Path::new("/"))
        .map(Path::to_owned)
        .collect();
    parents.reverse();
    parents.iter().map(|p| c_path(p)).collect()
}

impl MountPlan {
    /// Plans the mounts of `prison`. Host paths that do not exist are skipped for the optional
    /// defaults and refused for PrisonBind (its sources were checked at config time; a source
    /// that vanished since is an error here).
    pub fn new(prison: &Prison, host: &impl HostView) -> Result<Self, String> {
        let mut binds = Vec::new();
        let mut add = |source: &Path, target: &Path, writable: bool, when: When, required: bool| {
            let Some(source_is_dir) = host.kind(source) else {
                return if required {
                    Err(format!(
                        "PrisonBind source {} does not exist",
                        source.display()
                    ))
                } else {
                    Ok(())
                };
            };
            binds.push(BindMount {
                source: c_path(source)?,
                target: c_path(target)?,
                parents: parents_of(target)?,
                source_is_dir,
                writable,
                when,
            });
            Ok(())
        };
        for bind in &prison.binds {
            add(&bind.host, &bind.inside, bind.writable, When::Always, true)?;
        }
        if let Some(runtime) = &prison.runtime_dir {
            add(runtime, runtime, false, When::Always, false)?;
        }
        for default in HOST_DEFAULTS {
            add(
                Path::new(default),
                Path::new(default),
                false,
                When::IfMissing,
                false,
            )?;
        }
        Ok(Self {
            root: c_path(&prison.dir)?,
            binds,
            devices: DEVICES
                .iter()
                .map(|d| c_path(Path::new(d)))
                .collect::<Result<_, _>>()?,
            hostname: CString::new(prison.name.as_str()).map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bind, MemoryLimits, PrisonIp, PrisonName, Security};
    use std::collections::HashMap;

    struct FakeHost(HashMap<&'static str, bool>);
    impl HostView for FakeHost {
        fn kind(&self, path: &Path) -> Option<bool> {
            self.0.get(path.to_str().unwrap()).copied()
        }
    }

    fn prison(binds: Vec<Bind>, runtime_dir: Option<&str>) -> Prison {
        Prison {
            name: PrisonName::parse("www").unwrap(),
            dir: "/srv/prison".into(),
            ip: PrisonIp::default(),
            connect: None,
            security: Security::All,
            cpus: None,
            memory: MemoryLimits::default(),
            binds,
            processes: None,
            runtime_dir: runtime_dir.map(PathBuf::from),
        }
    }

    fn targets(plan: &MountPlan) -> Vec<(&str, When, bool)> {
        plan.binds
            .iter()
            .map(|b| (b.target.to_str().unwrap(), b.when, b.writable))
            .collect()
    }

    #[test]
    fn admin_binds_come_first_then_runtime_then_defaults_present_on_host() {
        let host = FakeHost(HashMap::from([
            ("/usr", true),
            ("/var/lib/php", true),
            ("/run/apache2", true),
            ("/etc/hosts", false),
            ("/etc/resolv.conf", false),
            ("/usr/share/zoneinfo", true),
        ]));
        let binds = vec![
            Bind {
                host: "/usr".into(),
                inside: "/usr".into(),
                writable: false,
            },
            Bind {
                host: "/var/lib/php".into(),
                inside: "/data/php".into(),
                writable: true,
            },
        ];
        let plan = MountPlan::new(&prison(binds, Some("/run/apache2")), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/usr", When::Always, false),
                ("/data/php", When::Always, true),
                ("/run/apache2", When::Always, false),
                ("/etc/resolv.conf", When::IfMissing, false),
                ("/etc/hosts", When::IfMissing, false),
                ("/usr/share/zoneinfo", When::IfMissing, false),
            ]
        );
        assert_eq!(plan.root.to_str().unwrap(), "/srv/prison");
        assert_eq!(plan.hostname.to_str().unwrap(), "www");
        assert_eq!(plan.devices.len(), 5);
    }

    #[test]
    fn parents_are_listed_outermost_first_without_root() {
        let host = FakeHost(HashMap::from([("/usr/share/zoneinfo", true)]));
        let plan = MountPlan::new(&prison(vec![], None), &host).unwrap();
        let parents: Vec<&str> = plan.binds[0]
            .parents
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect();
        assert_eq!(parents, ["/usr", "/usr/share"]);
        assert!(plan.binds[0].source_is_dir);
    }

    #[test]
    fn vanished_prison_bind_source_is_an_error_but_missing_defaults_are_skipped() {
        let host = FakeHost(HashMap::new());
        let binds = vec![Bind {
            host: "/gone".into(),
            inside: "/gone".into(),
            writable: false,
        }];
        let err = MountPlan::new(&prison(binds, None), &host).unwrap_err();
        assert!(err.contains("/gone"), "{err}");
        let plan = MountPlan::new(&prison(vec![], Some("/run/none")), &host).unwrap();
        assert!(plan.binds.is_empty());
    }
}
