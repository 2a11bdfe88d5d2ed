//! The holder: a short-lived process forked from the httpd parent that creates the prison's
//! namespaces, builds its mount tree from a [`MountPlan`], and waits while the parent opens
//! `/proc/<holder>/ns/*`. Then it exits; the namespaces live on through those descriptors and
//! the children that join them, and die with the last of them.
//!
//! The parent may be multithreaded (mod_watchdog), so between `fork` and `_exit` the holder only
//! makes raw syscalls on data prepared before the fork: no allocation, no locks, no logging.
//! A failure is reported back as (stage, item, errno) and described by the parent.

use std::ffi::{c_int, CStr};
use std::fs::File;
use std::os::fd::OwnedFd;

use super::plan::{Mount, MountPlan, Source, When};
use super::sys::{self, Errno};
use crate::jail::SetupError;

/// The stages of the holder, in order. The discriminant travels over the status pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Stage {
    Unshare = 1,
    MakeMountsPrivate,
    CloneBindSource,
    CloneDevice,
    BindRoot,
    SecureRoot,
    PivotRoot,
    MountDev,
    AttachDevice,
    VarRunLink,
    AttachBind,
    CheckVisible,
    DevReadOnly,
    Hostname,
    Loopback,
}

impl Stage {
    const ALL: [Stage; 15] = [
        Stage::Unshare,
        Stage::MakeMountsPrivate,
        Stage::CloneBindSource,
        Stage::CloneDevice,
        Stage::BindRoot,
        Stage::SecureRoot,
        Stage::PivotRoot,
        Stage::MountDev,
        Stage::AttachDevice,
        Stage::VarRunLink,
        Stage::AttachBind,
        Stage::CheckVisible,
        Stage::DevReadOnly,
        Stage::Hostname,
        Stage::Loopback,
    ];

    fn from_i32(value: i32) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    /// What the stage was doing, for the error log.
    pub fn describe(self, plan: &MountPlan, item: usize) -> String {
        let root = plan.root.to_string_lossy();
        let bind = |m: Option<&Mount>| {
            m.map_or_else(String::new, |m| {
                let source = match &m.source {
                    Source::Host { path, .. } => path.to_string_lossy().into_owned(),
                    Source::Tmpfs { .. } => "a tmpfs".to_owned(),
                };
                format!(" {source} at {} for {}", m.target.to_string_lossy(), m.what)
            })
        };
        let device = plan
            .devices
            .get(item)
            .map_or_else(String::new, |d| format!(" {}", d.to_string_lossy()));
        match self {
            Stage::Unshare => "creating the prison's namespaces".to_owned(),
            Stage::MakeMountsPrivate => "making the prison's mounts private".to_owned(),
            Stage::CloneBindSource => format!("taking the host path for binding{}", bind(plan.mounts.get(item))),
            Stage::CloneDevice => format!("taking the host device{device}"),
            Stage::BindRoot => format!("bind-mounting PrisonDir {root}"),
            Stage::SecureRoot => format!("making PrisonDir {root} nosuid,nodev"),
            Stage::PivotRoot => format!("making PrisonDir {root} the prison's root (pivot_root)"),
            Stage::MountDev => "mounting the prison's /dev (tmpfs; PrisonDir needs a dev directory or must be writable by root)".to_owned(),
            Stage::AttachDevice => format!("binding device{device} into the prison's /dev"),
            Stage::DevReadOnly => "making the prison's /dev read-only".to_owned(),
            Stage::VarRunLink => "making the prison's /var/run a symlink to /run, as on the host".to_owned(),
            Stage::AttachBind => format!("mounting{} inside the prison", bind(plan.mounts.get(item))),
            Stage::CheckVisible => format!("checking that the mount of{} is still visible: a later mount covers it, so a symlink inside PrisonDir leads two targets to one place; bind each at its real path", bind(plan.mounts.get(item))),
            Stage::Hostname => format!("setting the prison's hostname {}", plan.hostname.to_string_lossy()),
            Stage::Loopback => "bringing up lo in the prison's network namespace".to_owned(),
        }
    }
}

/// Descriptors of the prison's namespaces, opened from the holder.
#[derive(Debug)]
pub struct NamespaceFds {
    pub ipc: OwnedFd,
    pub uts: OwnedFd,
    /// `None`: the prison stays in the host network namespace (PrisonIP mode).
    pub net: Option<OwnedFd>,
    pub mnt: OwnedFd,
}

/// Forks the holder, lets it build the prison from `plan`, and returns the namespace fds.
pub fn build(plan: &MountPlan, own_network: bool) -> Result<NamespaceFds, SetupError> {
    let mut namespaces = None;
    run_holder(plan, own_network, |pid| {
        namespaces = Some(open_namespaces(pid, own_network)?);
        Ok(())
    })?;
    namespaces.ok_or_else(|| SetupError::check(step(plan, "opening the namespaces"), "not opened"))
}

/// The dry run (`apachectl -t`): the same holder builds the whole prison in namespaces of its
/// own, and exits; nobody opens them, so they die with it. What remains are the empty mount
/// points it created inside PrisonDir, as a start would.
pub fn rehearse(plan: &MountPlan, own_network: bool) -> Result<(), SetupError> {
    run_holder(plan, own_network, |_| Ok(()))
}

fn step(plan: &MountPlan, what: &str) -> String {
    format!(
        "building prison {}: {what}",
        plan.hostname.to_string_lossy()
    )
}

/// Forks the holder, waits for its report, and while it waits (the prison is built) calls
/// `built` with its pid.
fn run_holder(
    plan: &MountPlan,
    own_network: bool,
    built: impl FnOnce(libc::pid_t) -> Result<(), (String, std::io::Error)>,
) -> Result<(), SetupError> {
    let step = |what: &str| step(plan, what);
    // Everything the holder touches is allocated now, before the fork.
    let mut trees: Vec<c_int> = vec![-1; plan.mounts.len() + plan.devices.len()];
    let mut seen: Vec<(u64, u64)> = vec![(0, 0); plan.mounts.len()];
    let (status_r, status_w) =
        sys::pipe().map_err(|e| SetupError::new(step("creating a pipe"), errno(e)))?;
    let (go_r, go_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            sys::close(status_r);
            sys::close(status_w);
            return Err(SetupError::new(step("creating a pipe"), errno(e)));
        }
    };
    // SAFETY: the child branch only calls `holder_main`, which makes raw syscalls on
    // pre-allocated data and ends in _exit, as required after fork in a multithreaded process.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        sys::close(status_r);
        sys::close(go_w);
        holder_main(plan, own_network, &mut trees, &mut seen, status_w, go_r);
    }
    sys::close(status_w);
    sys::close(go_r);
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        sys::close(status_r);
        sys::close(go_w);
        return Err(SetupError::new(step("forking the namespace holder"), e));
    }
    let result = read_status(status_r, plan).map_err(|(what, e)| SetupError::new(step(&what), e));
    let result =
        result.and_then(|()| built(pid).map_err(|(what, e)| SetupError::new(step(&what), e)));
    sys::close(status_r);
    // Closing our end of the go pipe lets the holder exit.
    sys::close(go_w);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

fn errno(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

fn read_status(fd: c_int, plan: &MountPlan) -> Result<(), (String, std::io::Error)> {
    let mut buf = [0u8; 12];
    let n = sys::read_full(fd, &mut buf)
        .map_err(|e| ("reading the holder's status".to_owned(), errno(e)))?;
    if n != buf.len() {
        return Err((
            "the namespace holder died".to_owned(),
            std::io::Error::other("no status"),
        ));
    }
    let field = |i: usize| i32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (stage, item, err) = (field(0), field(4), field(8));
    if stage == 0 {
        return Ok(());
    }
    let what = Stage::from_i32(stage).map_or_else(
        || format!("stage {stage}"),
        |s| s.describe(plan, item as usize),
    );
    if stage == Stage::CheckVisible as i32 {
        return Err((what, std::io::Error::other("hidden by a later mount")));
    }
    Err((what, errno(err)))
}

fn open_namespaces(
    pid: libc::pid_t,
    own_network: bool,
) -> Result<NamespaceFds, (String, std::io::Error)> {
    let open = |kind: &str| {
        let path = format!("/proc/{pid}/ns/{kind}");
        File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| (format!("opening {path}"), e))
    };
    Ok(NamespaceFds {
        ipc: open("ipc")?,
        uts: open("uts")?,
        net: if own_network {
            Some(open("net")?)
        } else {
            None
        },
        mnt: open("mnt")?,
    })
}

/// The holder's whole life. Never returns.
fn holder_main(
    plan: &MountPlan,
    own_network: bool,
    trees: &mut [c_int],
    seen: &mut [(u64, u64)],
    status: c_int,
    go: c_int,
) -> ! {
    let code = match run_stages(plan, own_network, trees, seen) {
        Ok(()) => {
            let _ = sys::write_all(status, &report(0, 0, 0));
            // Wait until the parent has opened our namespaces (it closes the pipe).
            let mut byte = [0u8; 1];
            let _ = sys::read_full(go, &mut byte);
            0
        }
        Err((stage, item, e)) => {
            let _ = sys::write_all(status, &report(stage as i32, item as i32, e));
            1
        }
    };
    sys::exit_now(code)
}

fn report(stage: i32, item: i32, err: Errno) -> [u8; 12] {
    let mut buf = [0u8; 12];
    buf[..4].copy_from_slice(&stage.to_ne_bytes());
    buf[4..8].copy_from_slice(&item.to_ne_bytes());
    buf[8..].copy_from_slice(&err.to_ne_bytes());
    buf
}

type Failure = (Stage, usize, Errno);

fn at(stage: Stage, item: usize) -> impl Fn(Errno) -> Failure {
    move |e| (stage, item, e)
}

/// The prison's construction, in order; each ordering constraint says why. `seen[i]` records
/// what mount `i` showed once attached.
fn run_stages(
    plan: &MountPlan,
    own_network: bool,
    trees: &mut [c_int],
    seen: &mut [(u64, u64)],
) -> Result<(), Failure> {
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if own_network {
        flags |= libc::CLONE_NEWNET;
    }
    sys::unshare(flags).map_err(at(Stage::Unshare, 0))?;
    // Private before anything else: no mount we make may propagate back to the host.
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(at(Stage::MakeMountsPrivate, 0))?;

    // Host sources are taken while host paths still resolve on the host.
    let (mount_trees, device_trees) = trees.split_at_mut(plan.mounts.len());
    for (i, mount) in plan.mounts.iter().enumerate() {
        let Source::Host { path, .. } = &mount.source else {
            continue;
        };
        let tree = sys::clone_tree(path, true).map_err(at(Stage::CloneBindSource, i))?;
        mount_trees[i] = tree;
        let mut attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
        if !mount.writable {
            attrs |= libc::MOUNT_ATTR_RDONLY;
        }
        sys::set_mount_attrs(tree, c"", libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, attrs)
            .map_err(at(Stage::CloneBindSource, i))?;
    }
    for (i, device) in plan.devices.iter().enumerate() {
        let tree = sys::clone_tree(device, false).map_err(at(Stage::CloneDevice, i))?;
        device_trees[i] = tree;
        sys::set_mount_attrs(
            tree,
            c"",
            libc::AT_EMPTY_PATH,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC,
        )
        .map_err(at(Stage::CloneDevice, i))?;
    }

    // pivot_root needs the new root to be a mount point.
    sys::mount(
        Some(&plan.root),
        &plan.root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(at(Stage::BindRoot, 0))?;
    sys::set_mount_attrs(
        libc::AT_FDCWD,
        &plan.root,
        libc::AT_RECURSIVE,
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
    )
    .map_err(at(Stage::SecureRoot, 0))?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves nothing
    // above the prison's / (a chroot alone can be escaped by a process with CAP_SYS_CHROOT).
    sys::chdir(&plan.root).map_err(at(Stage::PivotRoot, 0))?;
    sys::pivot_root(c".", c".").map_err(at(Stage::PivotRoot, 0))?;
    sys::umount_detach(c".").map_err(at(Stage::PivotRoot, 0))?;
    sys::chdir(c"/").map_err(at(Stage::PivotRoot, 0))?;

    // From here on every path resolves inside the prison: symlinks cannot lead out.
    sys::mkdir_exist_ok(c"/dev").map_err(at(Stage::MountDev, 0))?;
    sys::mount(
        Some(c"tmpfs"),
        c"/dev",
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"mode=0755,size=64k"),
    )
    .map_err(at(Stage::MountDev, 0))?;
    for (i, device) in plan.devices.iter().enumerate() {
        sys::touch_exist_ok(device).map_err(at(Stage::AttachDevice, i))?;
        sys::attach_tree(device_trees[i], device).map_err(at(Stage::AttachDevice, i))?;
        sys::close(device_trees[i]);
    }

    // Before the mounts: their targets (the runtime dir at /run/apache2, a PrisonBind at
    // /var/run/mysqld) may resolve through it.
    if let Some(link) = &plan.var_run {
        make_var_run_link(&link.leftovers).map_err(at(Stage::VarRunLink, 0))?;
    }
    // Parents first (the plan's order), so no mount hides one made before it.
    for (i, mount) in plan.mounts.iter().enumerate() {
        if let Some(id) = attach(mount, mount_trees[i]).map_err(at(Stage::AttachBind, i))? {
            seen[i] = id;
        }
        if mount_trees[i] >= 0 {
            sys::close(mount_trees[i]);
        }
    }
    // A symlink inside PrisonDir can still lead a later target onto an earlier one: each mount
    // must still be what its target shows.
    for (i, mount) in plan.mounts.iter().enumerate() {
        if seen[i] != (0, 0) && sys::file_id(&mount.target) != Ok(seen[i]) {
            return Err((Stage::CheckVisible, i, 0));
        }
    }
    // After the mounts, so PrisonBind may add e.g. /dev/log; then nothing new can be created
    // in /dev (the device binds are mounts of their own and stay usable).
    sys::set_mount_attrs(libc::AT_FDCWD, c"/dev", 0, libc::MOUNT_ATTR_RDONLY)
        .map_err(at(Stage::DevReadOnly, 0))?;

    sys::sethostname(&plan.hostname).map_err(at(Stage::Hostname, 0))?;
    if own_network {
        sys::loopback_up().map_err(at(Stage::Loopback, 0))?;
    }
    Ok(())
}

/// `/var/run` -> `/run`, unless PrisonDir has a `var/run` of its own (after removing the empty
/// mount points an older module left in it).
fn make_var_run_link(leftovers: &[std::ffi::CString]) -> Result<(), Errno> {
    for dir in leftovers {
        sys::rmdir_if_empty(dir);
    }
    sys::rmdir_if_empty(c"/var/run");
    if sys::exists_nofollow(c"/var/run") {
        return Ok(());
    }
    sys::mkdir_exist_ok(c"/var")?;
    sys::symlink(c"/run", c"/var/run")
}

/// Attaches one mount; `Some(what its target shows now)` if it was made.
fn attach(mount: &Mount, tree: c_int) -> Result<Option<(u64, u64)>, Errno> {
    if mount.when == When::IfMissing && sys::has_content(&mount.target) {
        return Ok(None);
    }
    for parent in &mount.parents {
        sys::mkdir_exist_ok(parent)?;
    }
    let target: &CStr = &mount.target;
    if mount.is_dir() {
        sys::mkdir_exist_ok(target)?;
    } else {
        sys::touch_exist_ok(target)?;
    }
    // The kernel says only EINVAL for a directory onto a file or the reverse; say which.
    match (mount.is_dir(), sys::is_dir(target)?) {
        (true, false) => return Err(libc::ENOTDIR),
        (false, true) => return Err(libc::EISDIR),
        _ => {}
    }
    match &mount.source {
        Source::Host { .. } => sys::attach_tree(tree, target)?,
        Source::Tmpfs { options } => sys::mount(
            Some(c"tmpfs"),
            target,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(options),
        )?,
    }
    sys::file_id(target).map(Some)
}
