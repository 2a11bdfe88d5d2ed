//! Linux backend: the prison is a set of namespaces (mount with PrisonDir as `/`, IPC, UTS, and
//! network unless PrisonIP is set) built once per generation by a short-lived holder process.
//! With PrisonIP the children stay in the host's network namespace and a cgroup2 cgroup with
//! BPF programs confines their sockets to the prison's addresses (`sockaddr.rs`, `bpf.rs`; the cgroup is the prison's own, `cgroup/`).
//! Each child joins them and becomes the httpd User.

mod bpf;
#[cfg(test)]
mod bpf_interp;
mod cgroup;
mod claim;
mod fds;
mod holder;
pub mod plan;
pub mod security;
mod sockaddr;
mod sys;

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::Prison;

use super::{check_ret, Identity, SetupError};
use cgroup::{Cgroups, Limits};
use holder::NamespaceFds;
use plan::{MountPlan, RealHost};
use security::Restrictions;

/// What the children of one generation need to join the prison.
#[derive(Debug)]
pub struct Prepared {
    name: String,
    /// Held by the parent only; every child closes it first thing.
    claim: claim::NameClaim,
    identity: Identity,
    namespaces: NamespaceFds,
    /// Every cgroup of the prison (its limits; with PrisonIP, the cgroup2 one carrying the
    /// socket programs), which each child joins.
    cgroups: Cgroups,
    /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
    root_id: (u64, u64),
    /// PrisonSecurity, compiled.
    security: Restrictions,
}

impl Prepared {
    /// Parent, root: builds this generation's prison. Every generation builds its own
    /// namespaces and cgroups; the carry from the previous generation (see `release`) only
    /// names its cgroup leaf, which this build must not remove.
    pub fn build(
        prison: &Prison,
        identity: &Identity,
        carry: Option<&str>,
    ) -> Result<Self, SetupError> {
        let name = prison.name.to_string();
        let (meta, plan) = plan(prison)?;
        super::fault::inject("build")?;
        let security = Restrictions::build(prison.security, &prison.dir)?;
        let carry = Carry::parse(carry.unwrap_or_default());
        let claim = match &carry.claim {
            Some((fd, carried)) => claim::NameClaim::take_over(*fd, carried, &name)?,
            None => claim::NameClaim::claim(&name)?,
        };
        // Limits (and PrisonIP's programs) are in place before the holder starts: no child
        // can exist outside them, and a prison whose address cannot be enforced is never built.
        let mut cgroups = Cgroups::create_after(
            &name,
            &Limits::of(prison),
            Path::new("/proc"),
            carry.leaf.as_deref(),
        )?;
        if prison.ip.is_set() {
            if let Err(e) = attach_network_programs(&mut cgroups, prison) {
                let _ = cgroups.teardown();
                return Err(e);
            }
        }
        let namespaces = match holder::build(&plan, !prison.ip.is_set()) {
            Ok(namespaces) => namespaces,
            Err(e) => {
                let _ = cgroups.teardown();
                return Err(e);
            }
        };
        Ok(Self {
            name,
            claim,
            identity: identity.clone(),
            namespaces,
            cgroups,
            root_id: (meta.dev(), meta.ino()),
            security,
        })
    }

    /// Parent, root, under `apachectl -t` only: everything `build` does that can fail, without
    /// leaving anything behind. The mounts are made for real by the same holder in namespaces
    /// nobody keeps; the cgroups are planned, not created; PrisonIP's programs are loaded (so
    /// the verifier checks them) and closed, not attached. The PrisonName claim is not tried:
    /// at a graceful restart the running httpd holds it. Returns what was checked, for the log.
    pub fn dry_run(prison: &Prison) -> Result<String, SetupError> {
        let named = |e: SetupError| SetupError {
            step: format!("building prison {}: {}", prison.name, e.step),
            source: e.source,
        };
        let (_, plan) = plan(prison)?;
        Restrictions::build(prison.security, &prison.dir)?;
        let cgroups = Cgroups::check(
            prison.name.as_str(),
            &Limits::of(prison),
            Path::new("/proc"),
            prison.ip.is_set(),
        )
        .map_err(named)?;
        let programs = if prison.ip.is_set() {
            bpf::verify_programs(&sockaddr::programs(&prison.ip)).map_err(named)?
        } else {
            0
        };
        holder::rehearse(&plan, !prison.ip.is_set())?;
        Ok(format!(
            "{} mounts planned and made in a throwaway mount namespace, {cgroups}, {programs} \
             BPF programs verified",
            plan.mounts.len()
        ))
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
        // Before setns(mnt): inside the prison there is no cgroupfs to write to.
        super::fault::inject("join-cgroup")?;
        self.cgroups.join()?;
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
    /// namespaces and cgroups alive; the parent drops its references, and the next
    /// generation's monitor removes the old cgroups once they are empty. Children forked just
    /// before the restart may still be on their way in, so the carry hands over what they still
    /// hold: this generation's cgroup leaf (the next build must not remove it even if it looks
    /// empty) and the PrisonName claim (their copy closes only in attach, so a fresh claim
    /// could find the name taken).
    pub fn release(self) -> Option<String> {
        let carry = Carry {
            leaf: self.cgroups.leaf().map(str::to_owned),
            claim: Some((self.claim.hand_over(), self.name)),
        };
        Some(carry.to_string())
    }

    /// A carry the next generation does not use (the module stays loaded without a prison):
    /// the claim is released; the old cgroups are removed by teardown at exit.
    pub fn retire(carry: &str) {
        if let Some((fd, name)) = Carry::parse(carry).claim {
            claim::release_carried(fd, &name);
        }
    }

    /// Parent, periodically (httpd's monitor hook): the prison's resource events (memory
    /// report crossings, OOM kills, refused forks), one line each for the error log.
    pub fn monitor(&mut self) -> Vec<String> {
        self.cgroups.monitor()
    }

    /// Parent: httpd exits. The namespaces die with the last process in them; the cgroups are
    /// removed. Returns what could not be cleaned up, for the error log.
    pub fn teardown(self) -> Vec<String> {
        self.cgroups.teardown()
    }
}

/// PrisonDir as it is now and the mount plan: the first steps of `build` and `dry_run`.
fn plan(prison: &Prison) -> Result<(std::fs::Metadata, MountPlan), SetupError> {
    let name = &prison.name;
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
    Ok((meta, plan))
}

/// What a generation hands the next at a graceful restart, as text in the process pool: one
/// `leaf=<cgroup leaf>` and one `claim=<fd> <PrisonName>` line. A line of neither form is a bare
/// leaf (the carry of a module built before the claim was carried).
#[derive(Debug, Default, PartialEq)]
struct Carry {
    leaf: Option<String>,
    claim: Option<(RawFd, String)>,
}

impl Carry {
    fn parse(text: &str) -> Self {
        let mut carry = Carry::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(leaf) = line.strip_prefix("leaf=") {
                carry.leaf = Some(leaf.to_owned());
            } else if let Some(claim) = line.strip_prefix("claim=") {
                carry.claim = claim
                    .split_once(' ')
                    .and_then(|(fd, name)| Some((fd.parse().ok()?, name.to_owned())));
            } else {
                carry.leaf = Some(line.to_owned());
            }
        }
        carry
    }
}

impl std::fmt::Display for Carry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(leaf) = &self.leaf {
            writeln!(f, "leaf={leaf}")?;
        }
        if let Some((fd, name)) = &self.claim {
            writeln!(f, "claim={fd} {name}")?;
        }
        Ok(())
    }
}

/// PrisonIP: loads the socket programs for the prison's addresses and attaches them to the
/// prison's cgroup on the cgroup2 hierarchy (created here when no limit needed one).
fn attach_network_programs(cgroups: &mut Cgroups, prison: &Prison) -> Result<(), SetupError> {
    let step = |e: SetupError| SetupError {
        step: format!("building prison {}: {}", prison.name, e.step),
        source: e.source,
    };
    let dir = cgroups.v2_dir().map_err(step)?;
    bpf::attach_programs(&dir, &sockaddr::programs(&prison.ip)).map_err(step)
}

fn join(fd: &OwnedFd, kind: libc::c_int, what: &str) -> Result<(), SetupError> {
    // SAFETY: `fd` is an open namespace descriptor of type `kind`.
    check_ret(unsafe { libc::setns(fd.as_raw_fd(), kind) }, || {
        format!("joining the prison's {what} namespace")
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::Carry;

    #[test]
    fn a_carry_reads_back_what_it_wrote() {
        let carry = Carry {
            leaf: Some("prison-web.3".into()),
            claim: Some((7, "web".into())),
        };
        assert_eq!(carry.to_string(), "leaf=prison-web.3\nclaim=7 web\n");
        assert_eq!(Carry::parse(&carry.to_string()), carry);
        assert_eq!(Carry::parse(""), Carry::default());
    }

    #[test]
    fn an_older_modules_carry_is_a_bare_leaf_and_a_bad_claim_is_none() {
        let old = Carry::parse("prison-web.3");
        assert_eq!(old.leaf.as_deref(), Some("prison-web.3"));
        assert_eq!(old.claim, None);
        assert_eq!(Carry::parse("claim=x web").claim, None);
        assert_eq!(Carry::parse("claim=7").claim, None);
    }
}
