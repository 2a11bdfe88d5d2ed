//! Linux backend: the prison is a set of namespaces (mount with PrisonDir as `/`, IPC, UTS, and
//! network unless PrisonIP is set) built once per generation by a short-lived holder process.
//! With PrisonIP the children stay in the host's network namespace and a cgroup2 cgroup with
//! BPF programs confines their sockets to the prison's addresses (`sockaddr.rs`, `netcg.rs`).
//! Each child joins them and becomes the httpd User.

mod bpf;
#[cfg(test)]
mod bpf_interp;
mod claim;
mod fds;
mod holder;
mod netcg;
pub mod plan;
mod sockaddr;
mod sys;

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::config::Prison;

use super::{check_ret, Identity, SetupError};
use holder::NamespaceFds;
use netcg::NetCgroup;
use plan::{MountPlan, RealHost};

/// What the children of one generation need to join the prison.
#[derive(Debug)]
pub struct Prepared {
    name: String,
    /// Held by the parent only; every child closes it first thing.
    claim: claim::NameClaim,
    identity: Identity,
    namespaces: NamespaceFds,
    /// PrisonIP: the cgroup carrying the socket programs, which each child joins.
    network: Option<NetCgroup>,
    /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
    root_id: (u64, u64),
}

impl Prepared {
    /// Parent, root: builds this generation's prison.
    pub fn build(prison: &Prison, identity: &Identity) -> Result<Self, SetupError> {
        let name = prison.name.to_string();
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
        let claim = claim::NameClaim::claim(&name)?;
        // Before the holder: a prison whose address cannot be enforced is never built.
        let network = if prison.ip.is_set() {
            Some(network_cgroup(prison).map_err(|e| {
                SetupError::new(format!("building prison {name}: {}", e.step), e.source)
            })?)
        } else {
            None
        };
        let namespaces = match holder::build(&plan, network.is_none()) {
            Ok(namespaces) => namespaces,
            Err(e) => {
                if let Some(cgroup) = &network {
                    cgroup.remove(Duration::ZERO);
                }
                return Err(e);
            }
        };
        Ok(Self {
            name,
            claim,
            identity: identity.clone(),
            namespaces,
            network,
            root_id: (meta.dev(), meta.ino()),
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
        // SAFETY: the child's copy of the parent's claim; the child never uses it, and must not
        // hold the name (see claim.rs).
        unsafe { libc::close(self.claim.raw_fd()) };
        fds::close_directory_fds(&keep)?;
        // Before the mount namespace: the prison has no cgroupfs.
        if let Some(cgroup) = &self.network {
            cgroup.join()?;
        }
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
        self.identity.switch()
    }

    /// Child, after every other drop_privileges hook: asserts the child is in the prison and
    /// runs as the httpd User, not root.
    pub fn verify(&self) -> Result<(), SetupError> {
        super::fault::inject("verify")?;
        self.identity.verify_current()?;
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
    /// namespaces alive; the parent drops its references. Their cgroup stays while they run
    /// and is removed by a later build or the teardown.
    pub fn release(self) {
        if let Some(cgroup) = &self.network {
            cgroup.remove(Duration::ZERO);
        }
    }

    /// Parent: httpd exits. The namespaces die with the last process in them; the cgroup (and
    /// with it the BPF programs) is removed once the children are gone.
    pub fn teardown(self) {
        if let Some(cgroup) = &self.network {
            cgroup.remove(Duration::from_secs(5));
        }
    }
}

/// PrisonIP: this generation's cgroup with the socket programs attached.
fn network_cgroup(prison: &Prison) -> Result<NetCgroup, SetupError> {
    let cgroup = NetCgroup::create(Path::new("/proc"), &prison.name.to_string())?;
    if let Err(e) = cgroup.attach(&sockaddr::programs(&prison.ip)) {
        cgroup.remove(Duration::ZERO);
        return Err(e);
    }
    Ok(cgroup)
}

fn join(fd: &OwnedFd, kind: libc::c_int, what: &str) -> Result<(), SetupError> {
    // SAFETY: `fd` is an open namespace descriptor of type `kind`.
    check_ret(unsafe { libc::setns(fd.as_raw_fd(), kind) }, || {
        format!("joining the prison's {what} namespace")
    })
    .map(drop)
}
