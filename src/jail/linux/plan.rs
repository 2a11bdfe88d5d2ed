//! The prison's mount namespace as data: what the holder does, in order. Pure, so the order
//! and every path are unit-tested; the holder only executes it.
//!
//! Host sources are cloned as detached mount trees *before* `pivot_root` (they are host paths);
//! every target is resolved *after* it, inside the prison root, so a symlink inside PrisonDir can
//! never redirect a mount onto the host.
//!
//! **Order.** Mounts are attached parents first, whatever order the configuration wrote them
//! in (a stable sort by the depth of the target): a bind of `/var/lib/wordpress` written after
//! the read-write `/var/lib/wordpress/wp-content` is mounted before it and cannot hide it. The
//! module's own mounts (the runtime directory, the private `/tmp`, the DNS and time files) are
//! sorted with the admin's, and one is left out where a PrisonBind already decides what is
//! there: same target, or the same host path shown at the same place (a read-write
//! `PrisonBind /srv/site` shows `DefaultRuntimeDir /srv/site/logs` writable; a read-only copy
//! on top would hide the admin's writable one). A mount that still ends up hidden (a symlink
//! inside PrisonDir leading two targets to one place) is found by the holder, which fails.

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

/// When a mount is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only if nothing exists at the target inside the prison (PrisonDir's own copy wins).
    IfMissing,
}

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host path, bound (recursively).
    Host { path: CString, is_dir: bool },
    /// A fresh tmpfs with these mount options (the private `/tmp`).
    Tmpfs { options: CString },
}

/// One mount inside the prison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: Source,
    pub target: CString,
    /// Ancestors of `target` to create if missing, outermost first (`/usr`, `/usr/share`).
    pub parents: Vec<CString>,
    pub writable: bool,
    pub when: When,
    /// Who asked for it, in the admin's words, for errors: `PrisonBind /a /b rw (line 3 of
    /// /etc/apache2/apache2.conf)`, `DefaultRuntimeDir /run/apache2`.
    pub what: String,
}

impl Mount {
    /// Whether the target must be a directory.
    pub fn is_dir(&self) -> bool {
        match self.source {
            Source::Host { is_dir, .. } => is_dir,
            Source::Tmpfs { .. } => true,
        }
    }
}

/// The prison's `/var/run`, made a symlink to `/run` as on the host (Debian, and any systemd
/// host), so that `/var/run/mysqld/mysqld.sock` reaches a `PrisonBind /run/mysqld`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRunLink {
    /// Empty directories an older module made inside PrisonDir's `var/run` as mount points,
    /// deepest first: removed (`rmdir`, so only if empty) before the link is made. If
    /// `var/run` still exists after that, it is the admin's and stays.
    pub leftovers: Vec<CString>,
}

/// The whole mount plan of one prison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// PrisonDir (canonical host path), which becomes `/`.
    pub root: CString,
    /// Made before any mount (mount targets may resolve through it).
    pub var_run: Option<VarRunLink>,
    /// Mounts in the order they are attached: parents first; at equal depth in the order
    /// PrisonBind, PrisonTmp, runtime directory, DNS/time defaults.
    pub mounts: Vec<Mount>,
    /// Device nodes bound into the private `/dev` tmpfs.
    pub devices: Vec<CString>,
    pub hostname: CString,
}

/// Host facts the plan needs.
pub trait HostView {
    /// `Some(is_dir)` if the path exists (following symlinks).
    fn kind(&self, path: &Path) -> Option<bool>;
    /// The path with every symlink resolved, if it exists.
    fn canonical(&self, path: &Path) -> Option<PathBuf>;
    /// Whether something real is there: not nothing, an empty file or an empty directory (the
    /// holder's rule for mount points, see `sys::has_content`).
    fn has_content(&self, path: &Path) -> bool;
}

/// The real host.
#[derive(Debug)]
pub struct RealHost;

impl HostView for RealHost {
    fn kind(&self, path: &Path) -> Option<bool> {
        std::fs::metadata(path).ok().map(|m| m.is_dir())
    }

    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }

    fn has_content(&self, path: &Path) -> bool {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path).map_or(true, |mut d| d.next().is_some()),
            Ok(m) => m.len() > 0,
            Err(_) => false,
        }
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

/// A PrisonBind as the plan sees it.
struct AdminBind<'a> {
    host: &'a Path,
    inside: &'a Path,
    writable: bool,
    what: String,
}

impl AdminBind<'_> {
    /// Whether this bind already shows host path `host` at `target` inside (or is itself the
    /// mount at `target`): then a module mount there would only hide the admin's.
    fn decides(&self, host: &Path, target: &Path) -> bool {
        if self.inside == target {
            return true;
        }
        target
            .strip_prefix(self.inside)
            .is_ok_and(|rest| self.host.join(rest) == host)
    }
}

fn mode(writable: bool) -> &'static str {
    if writable {
        "rw"
    } else {
        "ro"
    }
}

impl MountPlan {
    /// Plans the mounts of `prison`. Host paths that do not exist are skipped for the optional
    /// defaults and refused for PrisonBind (its sources were checked at config time; a source
    /// that vanished since is an error here).
    pub fn new(prison: &Prison, host: &impl HostView) -> Result<Self, String> {
        let admin: Vec<AdminBind> = prison
            .binds
            .iter()
            .enumerate()
            .map(|(i, b)| AdminBind {
                host: &b.host,
                inside: &b.inside,
                writable: b.writable,
                what: format!(
                    "PrisonBind {} {} {}{}",
                    b.host.display(),
                    b.inside.display(),
                    mode(b.writable),
                    prison
                        .origins
                        .nth("PrisonBind", i)
                        .map_or_else(String::new, |at| format!(" ({at})"))
                ),
            })
            .collect();
        let decided = |host: &Path, target: &Path| admin.iter().any(|b| b.decides(host, target));
        let mut mounts = Vec::new();
        let mut bind = |source: &Path, target: &Path, writable, when, what: String| {
            let Some(is_dir) = host.kind(source) else {
                return Err(format!(
                    "{what}: host path {} does not exist",
                    source.display()
                ));
            };
            mounts.push(Mount {
                source: Source::Host {
                    path: c_path(source)?,
                    is_dir,
                },
                target: c_path(target)?,
                parents: parents_of(target)?,
                writable,
                when,
                what,
            });
            Ok::<(), String>(())
        };
        for b in &admin {
            bind(b.host, b.inside, b.writable, When::Always, b.what.clone())?;
        }
        let tmp = Path::new("/tmp");
        let private_tmp = prison
            .tmp
            .linux_size()
            .filter(|_| !admin.iter().any(|b| b.inside == tmp));
        if let Some(runtime) = &prison.runtime_dir {
            // Mounted where it really is (`/var/run/apache2` is `/run/apache2` on Debian; the
            // prison's /var/run is the same symlink).
            let real = host.canonical(runtime).unwrap_or_else(|| runtime.clone());
            let what = format!("DefaultRuntimeDir {}", runtime.display());
            if host.kind(&real).is_some() && !decided(&real, &real) && !decided(runtime, &real) {
                // Inside a PrisonBind that shows other host files there: fine where the
                // admin's source has nothing at that path (the mount point is made in it),
                // refused where the read-only mount would hide what the admin bound.
                let hidden = admin.iter().find_map(|b| {
                    let shown = b.host.join(real.strip_prefix(b.inside).ok()?);
                    host.has_content(&shown).then_some((b, shown))
                });
                if let Some((b, shown)) = hidden {
                    return Err(format!(
                        "{what} lies inside {}, and its read-only mount (for mod_cgid's \
                         socket) would hide {} that this bind shows at {}: bind {} at the same \
                         path inside, or move DefaultRuntimeDir out of {}",
                        b.what,
                        shown.display(),
                        real.display(),
                        real.display(),
                        b.inside.display()
                    ));
                }
                bind(&real, &real, false, When::Always, what)?;
            }
        }
        for default in HOST_DEFAULTS.map(Path::new) {
            // Inside a PrisonBind of other host files, only where that bind has a mount point
            // for it already: the plan never creates one in the admin's source.
            let unplaceable = admin.iter().any(|b| {
                default
                    .strip_prefix(b.inside)
                    .is_ok_and(|rest| host.kind(&b.host.join(rest)).is_none())
            });
            if host.kind(default).is_some() && !decided(default, default) && !unplaceable {
                let what = format!("the host's {} (a default)", default.display());
                bind(default, default, false, When::IfMissing, what)?;
            }
        }
        if let Some(size) = private_tmp {
            mounts.push(Mount {
                source: Source::Tmpfs {
                    options: c_path(Path::new(&format!("mode=1777,size={size}")))?,
                },
                target: c_path(tmp)?,
                parents: Vec::new(),
                writable: true,
                when: When::IfMissing,
                what: format!(
                    "the prison's private /tmp (PrisonTmp {size}{})",
                    prison
                        .origins
                        .nth("PrisonTmp", 0)
                        .map_or_else(String::new, |at| format!(", {at}"))
                ),
            });
        }
        // Parents first: a mount never hides one attached before it at a deeper target.
        // Stable, so at equal depth the order above stays.
        mounts.sort_by_key(|m| {
            Path::new(m.target.to_str().unwrap_or(""))
                .components()
                .count()
        });
        Ok(Self {
            root: c_path(&prison.dir)?,
            var_run: var_run_link(prison, &admin, host)?,
            mounts,
            devices: DEVICES
                .iter()
                .map(|d| c_path(Path::new(d)))
                .collect::<Result<_, _>>()?,
            hostname: CString::new(prison.name.as_str()).map_err(|e| e.to_string())?,
        })
    }
}

/// The `/var/run` symlink, when the host has one to `/run` and no PrisonBind decides `/var`
/// or `/var/run` (a symlink made inside a bind would be made on the host).
fn var_run_link(
    prison: &Prison,
    admin: &[AdminBind],
    host: &impl HostView,
) -> Result<Option<VarRunLink>, String> {
    let var_run = Path::new("/var/run");
    if host.canonical(var_run).as_deref() != Some(Path::new("/run"))
        || admin.iter().any(|b| var_run.starts_with(b.inside))
    {
        return Ok(None);
    }
    let mut leftovers = Vec::new();
    if let Some(runtime) = prison
        .runtime_dir
        .as_deref()
        .filter(|r| r.starts_with(var_run))
    {
        for dir in runtime.ancestors().take_while(|d| *d != var_run) {
            leftovers.push(c_path(dir)?);
        }
    }
    Ok(Some(VarRunLink { leftovers }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bind, MemoryLimits, Origins, PrisonIp, PrisonName, Security, Tmp};
    use std::collections::{HashMap, HashSet};

    /// Paths that exist (is_dir), symlinks (path -> canonical), paths with content.
    #[derive(Default)]
    struct FakeHost {
        kinds: HashMap<&'static str, bool>,
        links: HashMap<&'static str, &'static str>,
        content: HashSet<&'static str>,
    }

    impl FakeHost {
        fn with(kinds: &[(&'static str, bool)]) -> Self {
            Self {
                kinds: kinds.iter().copied().collect(),
                ..Self::default()
            }
        }
    }

    impl HostView for FakeHost {
        fn kind(&self, path: &Path) -> Option<bool> {
            let path = self.canonical(path)?;
            self.kinds.get(path.to_str().unwrap()).copied()
        }
        fn canonical(&self, path: &Path) -> Option<PathBuf> {
            let text = path.to_str().unwrap();
            for (link, to) in &self.links {
                if let Ok(rest) = path.strip_prefix(link) {
                    return Some(Path::new(to).join(rest));
                }
            }
            Some(PathBuf::from(text))
        }
        fn has_content(&self, path: &Path) -> bool {
            self.content.contains(path.to_str().unwrap())
        }
    }

    fn prison(binds: Vec<Bind>, runtime_dir: Option<&str>) -> Prison {
        Prison {
            name: PrisonName::parse("www").unwrap(),
            dir: "/srv/prison".into(),
            ip: PrisonIp::default(),
            security: Security::All,
            cpus: None,
            memory: MemoryLimits::default(),
            binds,
            processes: None,
            runtime_dir: runtime_dir.map(PathBuf::from),
            tmp: Tmp::Off,
            origins: Origins::default(),
        }
    }

    fn bind(host: &str, inside: &str, writable: bool) -> Bind {
        Bind {
            host: host.into(),
            inside: inside.into(),
            writable,
        }
    }

    fn targets(plan: &MountPlan) -> Vec<(&str, When, bool)> {
        plan.mounts
            .iter()
            .map(|m| (m.target.to_str().unwrap(), m.when, m.writable))
            .collect()
    }

    fn has_target(plan: &MountPlan, target: &str) -> bool {
        plan.mounts.iter().any(|m| m.target.to_str() == Ok(target))
    }

    #[test]
    fn binds_are_mounted_parents_first_whatever_the_config_order() {
        let host = FakeHost::with(&[
            ("/var/lib/wordpress", true),
            ("/var/lib/wordpress/wp-content", true),
            ("/usr", true),
            ("/usr/share/wordpress", true),
        ]);
        // The order of the issue: each child written before its parent.
        let binds = vec![
            bind(
                "/var/lib/wordpress/wp-content",
                "/var/lib/wordpress/wp-content",
                true,
            ),
            bind("/var/lib/wordpress", "/var/lib/wordpress", false),
            bind("/usr/share/wordpress", "/usr/share/wordpress", false),
            bind("/usr", "/usr", false),
        ];
        let plan = MountPlan::new(&prison(binds.clone(), None), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/usr", When::Always, false),
                ("/var/lib/wordpress", When::Always, false),
                ("/usr/share/wordpress", When::Always, false),
                ("/var/lib/wordpress/wp-content", When::Always, true),
            ]
        );
        // Negative control: in config order a parent followed its child, which it would hide.
        let written: Vec<&Path> = binds.iter().map(|b| b.inside.as_path()).collect();
        assert!(written[1] < written[0] && written[0].starts_with(written[1]));
        // And in the plan no mount is followed by one of its ancestors.
        for (i, earlier) in plan.mounts.iter().enumerate() {
            for later in &plan.mounts[i + 1..] {
                let (e, l) = (
                    earlier.target.to_str().unwrap(),
                    later.target.to_str().unwrap(),
                );
                assert!(!Path::new(e).starts_with(l), "{l} after {e}");
            }
        }
    }

    #[test]
    fn a_runtime_dir_inside_a_rw_bind_of_the_same_host_path_is_left_to_that_bind() {
        // Apache's test suite: `PrisonBind /src/t rw` and `DefaultRuntimeDir /src/t/logs`.
        let host = FakeHost::with(&[("/src/t", true), ("/src/t/logs", true)]);
        let binds = vec![bind("/src/t", "/src/t", true)];
        let plan = MountPlan::new(&prison(binds.clone(), Some("/src/t/logs")), &host).unwrap();
        assert_eq!(targets(&plan), vec![("/src/t", When::Always, true)]);
        // Negative control: without the bind the runtime dir is mounted, read-only; and the
        // old plan (runtime dir after the admin's binds, always) put it on top of the rw bind.
        let plan = MountPlan::new(&prison(vec![], Some("/src/t/logs")), &host).unwrap();
        assert_eq!(targets(&plan), vec![("/src/t/logs", When::Always, false)]);
        // A runtime dir elsewhere is still mounted beside the bind.
        let host = FakeHost::with(&[("/src/t", true), ("/run/apache2", true)]);
        let plan = MountPlan::new(&prison(binds, Some("/run/apache2")), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/src/t", When::Always, true),
                ("/run/apache2", When::Always, false)
            ]
        );
    }

    #[test]
    fn a_runtime_dir_that_would_hide_bound_files_is_refused() {
        let mut host = FakeHost::with(&[("/data", true), ("/srv/logs", true)]);
        let binds = vec![bind("/data", "/srv", true)];
        // /srv inside shows /data, and /data/logs holds files: a ro mount would hide them.
        host.content.insert("/data/logs");
        let err = MountPlan::new(&prison(binds.clone(), Some("/srv/logs")), &host).unwrap_err();
        assert!(
            err.contains("DefaultRuntimeDir /srv/logs") && err.contains("/data/logs"),
            "{err}"
        );
        // Negative control: nothing there in /data, so nothing is hidden; it is mounted after
        // the bind (deeper).
        host.content.clear();
        let plan = MountPlan::new(&prison(binds, Some("/srv/logs")), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/srv", When::Always, true),
                ("/srv/logs", When::Always, false)
            ]
        );
    }

    #[test]
    fn host_defaults_are_left_to_a_bind_that_decides_them() {
        let host = FakeHost::with(&[
            ("/etc", true),
            ("/etc/hosts", false),
            ("/etc/resolv.conf", false),
            ("/srv/hosts", false),
            ("/usr", true),
            ("/usr/share/zoneinfo", true),
        ]);
        let plan = MountPlan::new(&prison(vec![], None), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/etc/resolv.conf", When::IfMissing, false),
                ("/etc/hosts", When::IfMissing, false),
                ("/usr/share/zoneinfo", When::IfMissing, false),
            ]
        );
        let binds = vec![bind("/etc", "/etc", false), bind("/usr", "/usr", false)];
        let plan = MountPlan::new(&prison(binds, None), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![("/etc", When::Always, false), ("/usr", When::Always, false)]
        );
        // A bind of other files at a parent: the default only where that bind has a mount
        // point for it (nothing is created in the admin's source).
        let mut host = host;
        host.kinds.insert("/srv/etc", true);
        host.kinds.insert("/srv/etc/hosts", false);
        let binds = vec![bind("/srv/etc", "/etc", false)];
        let plan = MountPlan::new(&prison(binds, None), &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/etc", When::Always, false),
                ("/etc/hosts", When::IfMissing, false),
                ("/usr/share/zoneinfo", When::IfMissing, false),
            ]
        );
        // A bind at the same target with another source: the admin's file, not the host's.
        let binds = vec![bind("/srv/hosts", "/etc/hosts", false)];
        let plan = MountPlan::new(&prison(binds, None), &host).unwrap();
        let hosts: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.target.to_str() == Ok("/etc/hosts"))
            .collect();
        assert_eq!(hosts.len(), 1);
        assert!(
            hosts[0].what.starts_with("PrisonBind /srv/hosts"),
            "{}",
            hosts[0].what
        );
    }

    #[test]
    fn the_private_tmp_is_a_sized_tmpfs_mounted_before_what_lies_below_it() {
        let host = FakeHost::with(&[("/tmp/httpd/run", true)]);
        let mut p = prison(vec![], Some("/tmp/httpd/run"));
        p.tmp = Tmp::Default;
        let plan = MountPlan::new(&p, &host).unwrap();
        assert_eq!(
            targets(&plan),
            vec![
                ("/tmp", When::IfMissing, true),
                ("/tmp/httpd/run", When::Always, false)
            ]
        );
        assert_eq!(
            plan.mounts[0].source,
            Source::Tmpfs {
                options: CString::new("mode=1777,size=67108864").unwrap()
            }
        );
        p.tmp = Tmp::Size(1 << 20);
        let plan = MountPlan::new(&p, &host).unwrap();
        assert!(plan.mounts[0].what.contains("PrisonTmp 1048576"));
        // The admin's /tmp wins; off means none.
        let host = FakeHost::with(&[("/srv/tmp", true)]);
        let mut p = prison(vec![bind("/srv/tmp", "/tmp", true)], None);
        p.tmp = Tmp::Default;
        let plan = MountPlan::new(&p, &host).unwrap();
        assert_eq!(targets(&plan), vec![("/tmp", When::Always, true)]);
        p.binds.clear();
        p.tmp = Tmp::Off;
        assert!(!has_target(&MountPlan::new(&p, &host).unwrap(), "/tmp"));
    }

    #[test]
    fn var_run_is_the_hosts_symlink_and_the_runtime_dir_is_mounted_where_it_really_is() {
        let mut host = FakeHost::with(&[("/run/apache2", true)]);
        host.links.insert("/var/run", "/run");
        let p = prison(vec![], Some("/var/run/apache2"));
        let plan = MountPlan::new(&p, &host).unwrap();
        assert_eq!(targets(&plan), vec![("/run/apache2", When::Always, false)]);
        assert_eq!(
            plan.var_run,
            Some(VarRunLink {
                leftovers: vec![CString::new("/var/run/apache2").unwrap()]
            })
        );
        // A PrisonBind of /var (or /var/run) decides; no link is made inside it.
        let mut host = FakeHost::with(&[("/var", true), ("/run/apache2", true)]);
        host.links.insert("/var/run", "/run");
        let p = prison(vec![bind("/var", "/var", false)], Some("/var/run/apache2"));
        assert_eq!(MountPlan::new(&p, &host).unwrap().var_run, None);
        // Negative control: a host whose /var/run is a directory of its own.
        let host = FakeHost::with(&[("/var/run/apache2", true)]);
        let plan = MountPlan::new(&prison(vec![], Some("/var/run/apache2")), &host).unwrap();
        assert_eq!(plan.var_run, None);
        assert_eq!(
            targets(&plan),
            vec![("/var/run/apache2", When::Always, false)]
        );
    }

    #[test]
    fn parents_are_listed_outermost_first_without_root() {
        let host = FakeHost::with(&[("/usr/share/zoneinfo", true)]);
        let plan = MountPlan::new(&prison(vec![], None), &host).unwrap();
        let parents: Vec<&str> = plan.mounts[0]
            .parents
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect();
        assert_eq!(parents, ["/usr", "/usr/share"]);
        assert!(plan.mounts[0].is_dir());
        assert_eq!(plan.root.to_str().unwrap(), "/srv/prison");
        assert_eq!(plan.hostname.to_str().unwrap(), "www");
        assert_eq!(plan.devices.len(), 5);
    }

    #[test]
    fn vanished_prison_bind_source_is_an_error_naming_its_line() {
        let host = FakeHost::default();
        let mut p = prison(vec![bind("/gone", "/gone", false)], None);
        p.origins
            .record("PrisonBind", "line 7 of /etc/apache2/apache2.conf".into());
        let err = MountPlan::new(&p, &host).unwrap_err();
        assert!(
            err.contains("PrisonBind /gone /gone ro (line 7 of /etc/apache2/apache2.conf)"),
            "{err}"
        );
        let plan = MountPlan::new(&prison(vec![], Some("/run/none")), &host).unwrap();
        assert!(plan.mounts.is_empty());
    }
}
