//! Linux backend: the prison is a set of namespaces (mount with PrisonDir as `/`, IPC, UTS, and
//! network unless PrisonIP is set) built once per generation by a short-lived holder process.
//! Each child joins them with `setns` and becomes the httpd User.

mod fds;
mod holder;
pub mod plan;
pub mod security;
mod sys;

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use crate::config::Prison;

use super::{check_ret, Identity, SetupError};
use holder::NamespaceFds;
use plan::{MountPlan, RealHost};
use security::Restrictions;

/// What the children of one generation need to join the prison.
#[derive(Debug)]
pub struct Prepared {
    name: String,
    identity: Identity,
    namespaces: NamespaceFds,
    /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
    root_id: (u64, u64),
    /// PrisonSecurity, compiled.
    security: Restrictions,
}

impl Prepared {
    /// Parent, root: builds this generation's prison.
    pub fn build(prison: &Prison, identity: &Identity) -> Result<Self, SetupError> {
        let name = prison.name.to_string();
        if prison.ip.is_set() {
            // Until cgroup-BPF enforces the prison's address, a PrisonIP prison would have the
            // host's whole network: refuse rather than run open.
            return Err(SetupError::check(
                format!("building prison {name}"),
                "PrisonIP is not enforced on Linux yet; remove PrisonIP to give the prison no network",
            ));
        }
        let unenforced = [
            (prison.cpus.is_some(), "PrisonCPU"),
            (
                prison.memory != crate::config::MemoryLimits::default(),
                "PrisonMemory",
            ),
            (prison.processes.is_some(), "PrisonProcesses"),
        ];
        if let Some((_, directive)) = unenforced.iter().find(|(set, _)| *set) {
            // Until the prison's cgroup enforces it, refuse rather than run unlimited.
            return Err(SetupError::check(
                format!("building prison {name}"),
                format!("{directive} is not enforced on Linux yet; remove it"),
            ));
        }
        let meta = std::fs::metadata(&prison.dir).map_err(|e| {
            SetupError::new(
                format!(
                    "building prison {name}: reading PrisonDir {}",
                    prison.dir.display()
                ),
                e,
            )
        })?;
        let plan = MountPlan::new(prison, &RealHost).map_err(|e| {
            SetupError::check(format!("building prison {name}: planning its mounts"), e)
        })?;
        super::fault::inject("build")?;
        let security = Restrictions::build(prison.security, &prison.dir)?;
        let namespaces = holder::build(&plan, !prison.ip.is_set())?;
        Ok(Self {
            name,
            identity: identity.clone(),
            namespaces,
            root_id: (meta.dev(), meta.ino()),
            security,
        })
    }

    /// Child, root, single-threaded: joins the prison and becomes the httpd User. The order is
    /// fixed by the kernel: directory fds must be gone before the root changes, setns into a
    /// mount namespace needs CAP_SYS_ADMIN and CAP_SYS_CHROOT (so it comes before the user
    /// switch) and a single thread.
    pub fn attach(&self) -> Result<(), SetupError> {
        let ns = &self.namespaces;
        let keep: Vec<RawFd> = [Some(&ns.ipc), Some(&ns.uts), ns.net.as_ref(), Some(&ns.mnt)]
            .into_iter()
            .flatten()
            .map(AsRawFd::as_raw_fd)
            .collect();
        super::fault::inject("attach")?;
        fds::close_directory_fds(&keep)?;
        join(&ns.ipc, libc::CLONE_NEWIPC, "IPC")?;
        join(&ns.uts, libc::CLONE_NEWUTS, "UTS")?;
        if let Some(net) = &ns.net {
            join(net, libc::CLONE_NEWNET, "network")?;
        }
        // Last: after it, host paths (and /proc) are gone.
        join(&ns.mnt, libc::CLONE_NEWNS, "mount")?;
        for fd in keep {
            // SAFETY: the child's copies of the namespace fds; the parent keeps its own. The
            // child never uses them again (its Prepared is not dropped: httpd children exit
            // without clearing the config pool).
            unsafe { libc::close(fd) };
        }
        // SAFETY: "/" is a valid NUL-terminated path.
        check_ret(unsafe { libc::chdir(c"/".as_ptr()) }, || {
            "changing to the prison's /".to_owned()
        })?;
        // Jailed but still root: the worst place to stop, so the tests stop here too.
        super::fault::inject("switch-user")?;
        // Capability steps that need root (CAP_SETPCAP) come before the switch; the rest after
        // it, still before any thread exists.
        self.security.before_user_switch()?;
        self.identity.switch()?;
        super::fault::inject("restrict")?;
        self.security.after_user_switch()
    }

    /// What PrisonSecurity enforces in the children on this kernel, for the error log.
    pub fn security_summary(&self) -> String {
        self.security.summary()
    }

    /// Child, after every other drop_privileges hook: asserts the child is in the prison and
    /// runs as the httpd User, not root.
    pub fn verify(&self) -> Result<(), SetupError> {
        super::fault::inject("verify")?;
        self.identity.verify_current()?;
        self.security.verify()?;
        let root =
            std::fs::metadata("/").map_err(|e| SetupError::new("checking the child's root", e))?;
        if (root.dev(), root.ino()) != self.root_id {
            return Err(SetupError::check(
                "checking the child's root",
                "/ is not PrisonDir: the child is not in the prison",
            ));
        }
        // SAFETY: an all-zero utsname is a valid out-buffer for uname.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname writes only `uts`.
        check_ret(unsafe { libc::uname(&mut uts) }, || {
            "reading the child's hostname".to_owned()
        })?;
        // SAFETY: uname NUL-terminates nodename.
        let host = unsafe { CStr::from_ptr(uts.nodename.as_ptr()) };
        if host.to_bytes() != self.name.as_bytes() {
            return Err(SetupError::check(
                "checking the child's UTS namespace",
                format!(
                    "hostname is {:?}, not the prison's {:?}",
                    host.to_string_lossy(),
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Parent: the generation's configuration is torn down (restart). Old children keep their
    /// namespaces alive; the parent drops its references.
    pub fn release(self) {}

    /// Parent: httpd exits. The namespaces die with the last process in them.
    pub fn teardown(self) {}
}

fn join(fd: &OwnedFd, kind: libc::c_int, what: &str) -> Result<(), SetupError> {
    // SAFETY: `fd` is an open namespace descriptor of type `kind`.
    check_ret(unsafe { libc::setns(fd.as_raw_fd(), kind) }, || {
        format!("joining the prison's {what} namespace")
    })
    .map(drop)
}
