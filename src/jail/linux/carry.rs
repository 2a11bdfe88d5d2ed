//! What a generation hands the next at a graceful restart (see `jail` "Carry across a
//! restart"): plain text in httpd's process pool, naming descriptors the parent keeps open
//! across the module's reload.
//!
//! The next generation builds its own prison and then closes what the carry names (old
//! children hold their own references). If its build fails, it runs in the carried prison
//! instead ([`Prepared::carry_over`](super::Prepared::carry_over)): the carry holds everything
//! that needs — the namespaces, PrisonDir's root, the cgroups, and the prison's settings, from
//! which its seccomp filter, Landlock ruleset and monitor are rebuilt.
//!
//! Every descriptor is checked before it is used or closed (a namespace of the expected type
//! and inode, the claim socket bound to the name, the directory with the carried device and
//! inode): a number that does not check out is left alone, as it may have been reused.
//!
//! One line per item: `leaf=`, `claim=<fd> <name>`, `ns=<kind> <fd> <inode>`,
//! `root=<fd> <dev> <inode>`, `cgroup=<v1:controller|v2> <dir>`, `setting=<directive line>`.
//! A line of no known form is a bare leaf (the carry of a module built before the claim was
//! carried).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::cgroup::layout::Controller;
use super::cgroup::plan::Version;
use super::claim;
use super::holder::NamespaceFds;
use crate::config::{parse_processes, MemoryLimits, Security};
use crate::jail::SetupError;

/// The namespaces a prison has; the network one only without PrisonIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Ipc,
    Uts,
    Net,
    Mnt,
}

impl Namespace {
    const ALL: [Namespace; 4] = [
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Net,
        Namespace::Mnt,
    ];

    /// As in `/proc/<pid>/ns/`.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Net => "net",
            Namespace::Mnt => "mnt",
        }
    }

    /// The `CLONE_NEW*` flag, which is what `NS_GET_NSTYPE` returns.
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Mnt => libc::CLONE_NEWNS,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The text form of a carry, parsed; descriptors are only numbers until checked.
#[derive(Debug, Default, PartialEq)]
pub struct Carry {
    /// The previous generation's cgroup leaf (`prison-<name>.<n>`).
    pub leaf: Option<String>,
    pub claim: Option<(RawFd, String)>,
    /// (kind, descriptor, inode).
    pub namespaces: Vec<(Namespace, RawFd, u64)>,
    /// An `O_PATH` descriptor of PrisonDir and its (st_dev, st_ino).
    pub root: Option<(RawFd, (u64, u64))>,
    /// The cgroups its children joined.
    pub cgroups: Vec<(Version, PathBuf)>,
    /// Its prison's settings ([`Prison::settings`](crate::config::Prison::settings)).
    pub settings: Vec<String>,
}

impl Carry {
    pub fn parse(text: &str) -> Self {
        let mut carry = Carry::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let Some((key, value)) = line.split_once('=') else {
                carry.leaf = Some(line.to_owned());
                continue;
            };
            let words: Vec<&str> = value.split(' ').collect();
            match (key, words.as_slice()) {
                ("leaf", _) => carry.leaf = Some(value.to_owned()),
                ("claim", _) => {
                    carry.claim = value
                        .split_once(' ')
                        .and_then(|(fd, name)| Some((fd.parse().ok()?, name.to_owned())));
                }
                ("ns", [kind, fd, ino]) => {
                    if let (Some(kind), Ok(fd), Ok(ino)) =
                        (Namespace::parse(kind), fd.parse(), ino.parse())
                    {
                        carry.namespaces.push((kind, fd, ino));
                    }
                }
                ("root", [fd, dev, ino]) => {
                    if let (Ok(fd), Ok(dev), Ok(ino)) = (fd.parse(), dev.parse(), ino.parse()) {
                        carry.root = Some((fd, (dev, ino)));
                    }
                }
                ("cgroup", _) => {
                    if let Some((version, dir)) = value.split_once(' ') {
                        if let Some(version) = parse_version(version) {
                            carry.cgroups.push((version, PathBuf::from(dir)));
                        }
                    }
                }
                ("setting", _) => carry.settings.push(value.to_owned()),
                _ => carry.leaf = Some(line.to_owned()),
            }
        }
        carry
    }

    /// Whether a previous generation handed over a prison (a restart, not a first start).
    pub fn has_prison(&self) -> bool {
        !self.namespaces.is_empty()
    }

    /// The next generation built its own prison: closes every carried descriptor that checks
    /// out. Old children hold their own references; the old prison lives on in them.
    pub fn close(&self) {
        if let Some((fd, name)) = &self.claim {
            claim::release_carried(*fd, name);
        }
        for &(kind, fd, ino) in &self.namespaces {
            drop(namespace_fd(kind, fd, ino));
        }
        if let Some((fd, id)) = self.root {
            drop(root_fd(fd, id));
        }
    }

    /// Takes the carried namespaces, each checked; `own_network`: the prison had no PrisonIP,
    /// so it has a network namespace.
    pub fn take_namespaces(&self, own_network: bool) -> Result<NamespaceFds, SetupError> {
        let take = |wanted: Namespace| {
            let &(kind, fd, ino) = self
                .namespaces
                .iter()
                .find(|(kind, _, _)| *kind == wanted)
                .ok_or_else(|| {
                    SetupError::check(
                        format!("taking over the {} namespace", wanted.name()),
                        "the previous generation handed none over",
                    )
                })?;
            namespace_fd(kind, fd, ino)
        };
        Ok(NamespaceFds {
            ipc: take(Namespace::Ipc)?,
            uts: take(Namespace::Uts)?,
            net: if own_network {
                Some(take(Namespace::Net)?)
            } else {
                None
            },
            mnt: take(Namespace::Mnt)?,
        })
    }

    /// Takes the carried `O_PATH` descriptor of PrisonDir, checked.
    pub fn take_root(&self) -> Result<(OwnedFd, (u64, u64)), SetupError> {
        let (fd, id) = self.root.ok_or_else(|| {
            SetupError::check(
                "taking over PrisonDir",
                "the previous generation handed none over",
            )
        })?;
        Ok((root_fd(fd, id)?, id))
    }

    /// The carried prison's settings that its restrictions and limits are rebuilt from.
    pub fn prison(&self) -> Result<CarriedPrison, SetupError> {
        let bad = |line: &str, e: &dyn std::fmt::Display| {
            SetupError::check(
                "reading the previous generation's settings",
                format!("{line:?}: {e}"),
            )
        };
        let mut prison = CarriedPrison {
            name: String::new(),
            security: Security::None,
            memory: MemoryLimits::default(),
            processes: None,
            own_network: true,
        };
        let mut security = None;
        for line in &self.settings {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["PrisonName", name] => prison.name = (*name).to_owned(),
                ["PrisonSecurity", level] => {
                    security = Some(level.parse::<Security>().map_err(|e| bad(line, &e))?);
                }
                ["PrisonMemory", report, deny] => {
                    prison.memory = MemoryLimits::parse(report, deny).map_err(|e| bad(line, &e))?;
                }
                ["PrisonProcesses", n] => {
                    prison.processes = parse_processes(n).map_err(|e| bad(line, &e))?;
                }
                ["PrisonIP", ..] => prison.own_network = false,
                _ => {}
            }
        }
        // Never weaker than it was: a carry without its level is refused.
        prison.security = security.ok_or_else(|| bad("PrisonSecurity", &"missing"))?;
        if prison.name.is_empty() {
            return Err(bad("PrisonName", &"missing"));
        }
        Ok(prison)
    }
}

/// What the carried prison's restrictions, limits and monitor are rebuilt from.
#[derive(Debug, PartialEq, Eq)]
pub struct CarriedPrison {
    pub name: String,
    pub security: Security,
    pub memory: MemoryLimits,
    pub processes: Option<u64>,
    /// No PrisonIP: the prison has its own network namespace.
    pub own_network: bool,
}

impl std::fmt::Display for Carry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(leaf) = &self.leaf {
            writeln!(f, "leaf={leaf}")?;
        }
        if let Some((fd, name)) = &self.claim {
            writeln!(f, "claim={fd} {name}")?;
        }
        for (kind, fd, ino) in &self.namespaces {
            writeln!(f, "ns={} {fd} {ino}", kind.name())?;
        }
        if let Some((fd, (dev, ino))) = &self.root {
            writeln!(f, "root={fd} {dev} {ino}")?;
        }
        for (version, dir) in &self.cgroups {
            writeln!(f, "cgroup={} {}", version_name(*version), dir.display())?;
        }
        for line in &self.settings {
            writeln!(f, "setting={line}")?;
        }
        Ok(())
    }
}

fn version_name(version: Version) -> String {
    match version {
        Version::V1(controller) => format!("v1:{}", controller.name()),
        Version::V2 => "v2".to_owned(),
    }
}

fn parse_version(text: &str) -> Option<Version> {
    if text == "v2" {
        return Some(Version::V2);
    }
    let name = text.strip_prefix("v1:")?;
    Controller::ALL
        .into_iter()
        .find(|c| c.name() == name)
        .map(Version::V1)
}

/// The inode of an open descriptor (a namespace's identity), for the carry.
pub fn inode(fd: &impl AsRawFd) -> u64 {
    fstat(fd.as_raw_fd()).map_or(0, |st| st.st_ino)
}

fn fstat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes `st`; a descriptor that is not open gives EBADF.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

/// `NS_GET_NSTYPE` (linux/nsfs.h: `_IO(0xb7, 0x3)`).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Takes `fd` if it is a namespace of `kind` with inode `ino`, as the previous generation
/// handed it over.
fn namespace_fd(kind: Namespace, fd: RawFd, ino: u64) -> Result<OwnedFd, SetupError> {
    let step = || {
        format!(
            "taking over the {} namespace (descriptor {fd})",
            kind.name()
        )
    };
    let st = fstat(fd).ok_or_else(|| SetupError::last_os_error(step()))?;
    // SAFETY: NS_GET_NSTYPE takes no argument; on a descriptor that is not a namespace it
    // fails with ENOTTY or EINVAL.
    let got = unsafe { libc::ioctl(fd, NS_GET_NSTYPE as _) };
    if got != kind.clone_flag() || st.st_ino != ino {
        return Err(SetupError::check(
            step(),
            format!(
                "it is not the {} namespace {ino} the previous generation handed over \
                 (type {got:#x}, inode {})",
                kind.name(),
                st.st_ino
            ),
        ));
    }
    // SAFETY: `fd` is open and is the namespace the previous generation of this process gave
    // up with `into_raw_fd` (checked above: type and inode); each carry is taken once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes `fd` if it is a directory with (st_dev, st_ino) `id`.
fn root_fd(fd: RawFd, id: (u64, u64)) -> Result<OwnedFd, SetupError> {
    let step = || format!("taking over PrisonDir (descriptor {fd})");
    let st = fstat(fd).ok_or_else(|| SetupError::last_os_error(step()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR || (st.st_dev, st.st_ino) != id {
        return Err(SetupError::check(
            step(),
            "it is not the directory the previous generation handed over",
        ));
    }
    // SAFETY: `fd` is open and is the PrisonDir descriptor the previous generation gave up
    // with `into_raw_fd` (checked above: a directory of that device and inode).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens PrisonDir `O_PATH` (it is carried across restarts, and the Landlock ruleset is made
/// on it) and returns it with its (st_dev, st_ino).
pub fn open_root(dir: &std::path::Path) -> Result<(OwnedFd, (u64, u64)), SetupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let step = || format!("opening PrisonDir {}", dir.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| SetupError::new(step(), e))?;
    let meta = file.metadata().map_err(|e| SetupError::new(step(), e))?;
    Ok((file.into(), (meta.dev(), meta.ino())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn full() -> Carry {
        Carry {
            leaf: Some("prison-web.3".into()),
            claim: Some((7, "web".into())),
            namespaces: vec![
                (Namespace::Ipc, 8, 4026532001),
                (Namespace::Mnt, 9, 4026532002),
            ],
            root: Some((10, (2049, 77))),
            cgroups: vec![
                (
                    Version::V1(Controller::Pids),
                    "/sys/fs/cgroup/pids/a b/prison-web.3".into(),
                ),
                (Version::V2, "/sys/fs/cgroup/unified/prison-web.3".into()),
            ],
            settings: vec![
                "PrisonName web".into(),
                "PrisonDir \"/srv/a b\"".into(),
                "PrisonSecurity IPC".into(),
                "PrisonMemory 0 1024".into(),
                "PrisonProcesses 64".into(),
                "PrisonIP 192.0.2.1".into(),
            ],
        }
    }

    #[test]
    fn a_carry_reads_back_what_it_wrote() {
        let carry = full();
        assert_eq!(Carry::parse(&carry.to_string()), carry);
        assert_eq!(Carry::parse(""), Carry::default());
        let short = Carry {
            leaf: Some("prison-web.3".into()),
            claim: Some((7, "web".into())),
            ..Carry::default()
        };
        assert_eq!(short.to_string(), "leaf=prison-web.3\nclaim=7 web\n");
    }

    #[test]
    fn an_older_modules_carry_is_a_bare_leaf_and_bad_lines_are_none() {
        let old = Carry::parse("prison-web.3");
        assert_eq!(old.leaf.as_deref(), Some("prison-web.3"));
        assert_eq!(old.claim, None);
        assert!(!old.has_prison());
        let bad = Carry::parse("claim=x web\nns=pid 3 4\nns=mnt x 4\nroot=1 2\ncgroup=v1:cpu /x");
        assert_eq!(bad.claim, None);
        assert!(bad.namespaces.is_empty() && bad.root.is_none() && bad.cgroups.is_empty());
        assert_eq!(Carry::parse("claim=7").claim, None);
    }

    #[test]
    fn the_carried_settings_give_back_the_level_and_limits() {
        let prison = full().prison().unwrap();
        assert_eq!(
            prison,
            CarriedPrison {
                name: "web".into(),
                security: Security::Ipc,
                memory: MemoryLimits {
                    report: None,
                    deny: Some(1024)
                },
                processes: Some(64),
                own_network: false,
            }
        );
        let mut no_level = full();
        no_level
            .settings
            .retain(|l| !l.starts_with("PrisonSecurity"));
        assert!(
            no_level.prison().is_err(),
            "a carry never weakens the level"
        );
    }

    #[test]
    fn only_a_namespace_of_the_right_type_and_inode_is_taken() {
        let ns = File::open("/proc/self/ns/uts").unwrap();
        let ino = inode(&ns);
        assert_ne!(ino, 0);
        let fd = ns.as_raw_fd();
        // Wrong type, wrong inode, not a namespace at all: refused and left open.
        assert!(namespace_fd(Namespace::Mnt, fd, ino).is_err());
        assert!(namespace_fd(Namespace::Uts, fd, ino + 1).is_err());
        let plain = File::open("/dev/null").unwrap();
        assert!(namespace_fd(Namespace::Uts, plain.as_raw_fd(), inode(&plain)).is_err());
        let owned = namespace_fd(Namespace::Uts, std::os::fd::IntoRawFd::into_raw_fd(ns), ino)
            .expect("the right namespace");
        assert_eq!(owned.as_raw_fd(), fd);
    }

    #[test]
    fn only_the_carried_directory_is_taken_as_the_root() {
        let dir = std::env::temp_dir();
        let (root, id) = open_root(&dir).unwrap();
        let fd = root.as_raw_fd();
        assert!(root_fd(fd, (id.0, id.1 + 1)).is_err());
        let plain = File::open("/dev/null").unwrap();
        let st = fstat(plain.as_raw_fd()).unwrap();
        assert!(root_fd(plain.as_raw_fd(), (st.st_dev, st.st_ino)).is_err());
        let taken = root_fd(std::os::fd::IntoRawFd::into_raw_fd(root), id).unwrap();
        assert_eq!(taken.as_raw_fd(), fd);
    }
}
