//! Linux backend: the prison is a set of namespaces (mount with PrisonDir as `/`, IPC, UTS, and
//! network unless PrisonIP is set) built once per generation by a short-lived holder process.
//! With PrisonIP the children stay in the host's network namespace and a cgroup2 cgroup with
//! BPF programs confines their sockets to the prison's addresses (`sockaddr.rs`, `bpf.rs`; the cgroup is the prison's own, `cgroup/`).
//! Each child joins them and becomes the httpd User.

mod bpf;
#[cfg(any(test, feature = "fuzzing"))]
mod bpf_interp;
mod carry;
mod cgroup;
mod claim;
mod fds;
#[cfg(feature = "fuzzing")]
pub mod fuzz;
mod holder;
pub mod plan;
pub mod security;
mod sockaddr;
mod sys;

pub use bpf::{attached, program_loaded};

use std::ffi::CStr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{MpmCeiling, Prison};

use super::{check_ret, Identity, SetupError};
use carry::{Carry, Namespace};
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
    /// PrisonDir, `O_PATH`: carried across restarts (a carried-over prison rebuilds its
    /// Landlock ruleset on it). Every child closes it first thing.
    root: OwnedFd,
    /// (st_dev, st_ino) of PrisonDir: what the child's `/` must be.
    root_id: (u64, u64),
    /// PrisonSecurity, compiled.
    security: Restrictions,
    /// The prison's settings as directive lines, carried so that a later generation that
    /// runs in this prison can say which of its own settings did not apply.
    settings: Vec<String>,
    /// PrisonConnect's refusal counter, read by the monitor.
    refusals: Option<Refusals>,
}

/// The count of connections and datagrams PrisonConnect refused, and how many were reported.
#[derive(Debug)]
struct Refusals {
    counter: bpf::Counter,
    reported: u64,
}

impl Prepared {
    /// Parent, root: builds this generation's prison. Every generation builds its own
    /// namespaces and cgroups; the carry from the previous generation (see `release`) names
    /// its cgroup leaf, which this build must not remove, and its prison, which is left as it
    /// is if this build fails (for `carry_over`) and closed once it succeeds.
    pub fn build(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: Option<&str>,
    ) -> Result<Self, SetupError> {
        let carry = Carry::parse(carry.unwrap_or_default());
        let prepared = Self::build_new(prison, identity, mpm, &carry)?;
        // The previous generation's prison is its children's alone now.
        carry.close();
        Ok(prepared)
    }

    fn build_new(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: &Carry,
    ) -> Result<Self, SetupError> {
        let name = prison.name.to_string();
        let (root, root_id) = open_root(prison)?;
        let plan = plan(prison)?;
        super::fault::inject("build")?;
        if carry.has_prison() {
            super::fault::inject("rebuild")?;
        }
        let security = Restrictions::build(prison.security, &prison.dir)?;
        // The carried claim is shared, not taken: should this build fail, the carried prison
        // needs it.
        let claim = match &carry.claim {
            Some((fd, carried)) if *carried == name => claim::NameClaim::share(*fd, &name)?,
            _ => claim::NameClaim::claim(&name)?,
        };
        // Limits (and PrisonIP's programs) are in place before the holder starts: no child
        // can exist outside them, and a prison whose address cannot be enforced is never built.
        let mut cgroups = Cgroups::create_after(
            &name,
            &Limits::of(prison, mpm.tasks()),
            Path::new("/proc"),
            carry.leaf.as_deref(),
        )?;
        let mut refusals = None;
        if prison.ip.is_set() {
            match attach_network_programs(&mut cgroups, prison) {
                Ok(counter) => {
                    refusals = counter.map(|counter| Refusals {
                        counter,
                        reported: 0,
                    })
                }
                Err(e) => {
                    // Only what this build made: the previous generation's cgroups stay in use.
                    cgroups.discard();
                    return Err(e);
                }
            }
        }
        let namespaces = match holder::build(&plan, !prison.ip.is_set()) {
            Ok(namespaces) => namespaces,
            Err(e) => {
                cgroups.discard();
                return Err(e);
            }
        };
        Ok(Self {
            name,
            claim,
            identity: identity.clone(),
            namespaces,
            cgroups,
            root,
            root_id,
            security,
            settings: prison.settings(),
            refusals,
        })
    }

    /// Parent, root, under `apachectl -t` only: everything `build` does that can fail, without
    /// leaving anything behind. The mounts are made for real by the same holder in namespaces
    /// nobody keeps; the cgroups are planned, not created; PrisonIP's programs are loaded (so
    /// the verifier checks them) and closed, not attached. The PrisonName claim is not tried:
    /// at a graceful restart the running httpd holds it. Returns what was checked, for the log.
    pub fn dry_run(prison: &Prison, mpm: &MpmCeiling) -> Result<String, SetupError> {
        let named = |e: SetupError| SetupError {
            step: format!("building prison {}: {}", prison.name, e.step),
            source: e.source,
        };
        open_root(prison)?;
        let plan = plan(prison)?;
        Restrictions::build(prison.security, &prison.dir)?;
        let cgroups = Cgroups::check(
            prison.name.as_str(),
            &Limits::of(prison, mpm.tasks()),
            Path::new("/proc"),
            prison.ip.is_set(),
        )
        .map_err(named)?;
        let programs = if prison.ip.is_set() {
            let (programs, _counter) = network_programs(prison)?;
            bpf::verify_programs(&programs).map_err(named)?
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

    /// Parent, root, at a restart whose `build` failed: this generation's children run in the
    /// previous generation's prison, as `carry` hands it over (its namespaces, PrisonDir,
    /// cgroups and settings; its seccomp filter, Landlock ruleset and monitor rebuilt from
    /// them). They run as this generation's User, and the task limit makes room for them beside
    /// the previous generation's children. Returns it with what of `prison` (the new
    /// configuration) does not apply, for the error log.
    pub fn carry_over(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: &str,
    ) -> Result<(Self, String), SetupError> {
        let step = |e: SetupError| SetupError {
            step: format!("carrying over the previous generation's prison: {}", e.step),
            source: e.source,
        };
        super::fault::inject("carry-over").map_err(step)?;
        let carry = Carry::parse(carry);
        let old = carry.prison().map_err(step)?;
        let namespaces = carry.take_namespaces(old.own_network).map_err(step)?;
        let (root, root_id) = carry.take_root().map_err(step)?;
        // The Landlock rule is on the inode: reached through the carried descriptor, it holds
        // even if PrisonDir's path changed since.
        let root_path = PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd()));
        let security = Restrictions::build(old.security, &root_path).map_err(step)?;
        let limits = Limits {
            memory_report: old.memory.report,
            memory_deny: old.memory.deny,
            cpus: None,
            processes: old.processes,
            // This generation's children join beside the previous generation's, which leave
            // as they finish: room for both.
            httpd_tasks: mpm.tasks().saturating_mul(2),
        };
        let cgroups = Cgroups::adopt(
            &old.name,
            &limits,
            Path::new("/proc"),
            carry.leaf.as_deref(),
            &carry.cgroups,
        )
        .map_err(step)?;
        let claim = match &carry.claim {
            Some((fd, carried)) => claim::NameClaim::take_over(*fd, carried, &old.name),
            None => claim::NameClaim::claim(&old.name),
        }
        .map_err(step)?;
        let (not_applied, kept) = crate::config::difference(&carry.settings, &prison.settings());
        let unapplied = if not_applied.is_empty() && kept.is_empty() {
            "the new configuration's prison settings are the previous generation's".to_owned()
        } else {
            let list = |lines: &[String]| match lines {
                [] => "none".to_owned(),
                _ => lines.join("; "),
            };
            format!(
                "settings of the new configuration that do not apply: {}; settings of the \
                 previous generation that stay in force instead: {}",
                list(&not_applied),
                list(&kept)
            )
        };
        let prepared = Self {
            name: old.name,
            claim,
            identity: identity.clone(),
            namespaces,
            cgroups,
            root,
            root_id,
            security,
            settings: carry.settings,
            // The previous generation's PrisonConnect programs stay attached and refuse as
            // before; their counter map is not carried, so this generation reports no counts.
            refusals: None,
        };
        Ok((prepared, unapplied))
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
        // SAFETY: the child's copy of the parent's PrisonDir descriptor: a directory of the
        // host, never to be held inside.
        unsafe { libc::close(self.root.as_raw_fd()) };
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
    /// namespaces and cgroups alive; the next generation's monitor removes the old cgroups once
    /// they are empty. Children forked just before the restart may still be on their way in,
    /// so the carry hands over what they still hold: this generation's cgroup leaf (the next
    /// build must not remove it even if it looks empty) and the PrisonName claim (their copy
    /// closes only in attach, so a fresh claim could find the name taken). It also hands over
    /// the whole prison — namespaces, PrisonDir, cgroups, settings — for the next generation
    /// to run in should its own build fail; that generation closes them once it has its own.
    pub fn release(self) -> Option<String> {
        let ns = self.namespaces;
        let namespaces = [
            (Namespace::Ipc, Some(ns.ipc)),
            (Namespace::Uts, Some(ns.uts)),
            (Namespace::Net, ns.net),
            (Namespace::Mnt, Some(ns.mnt)),
        ]
        .into_iter()
        .filter_map(|(kind, fd)| {
            let fd = fd?;
            let ino = carry::inode(&fd);
            Some((kind, fd.into_raw_fd(), ino))
        })
        .collect();
        let carry = Carry {
            leaf: self.cgroups.leaf().map(str::to_owned),
            claim: Some((self.claim.hand_over(), self.name)),
            namespaces,
            root: Some((self.root.into_raw_fd(), self.root_id)),
            cgroups: self
                .cgroups
                .joined()
                .map(|(version, dir)| (version, dir.to_owned()))
                .collect(),
            settings: self.settings,
        };
        Some(carry.to_string())
    }

    /// A carry the next generation does not use (the module stays loaded without a prison):
    /// the claim is released; the old cgroups are removed by teardown at exit.
    pub fn retire(carry: &str) {
        Carry::parse(carry).close();
    }

    /// Parent, periodically (httpd's monitor hook): the prison's resource events (memory
    /// report crossings, OOM kills, refused forks) and PrisonConnect's refusals since the last
    /// call, one line each for the error log.
    pub fn monitor(&mut self) -> Vec<String> {
        let mut events = self.cgroups.monitor();
        if let Some(refusals) = &mut self.refusals {
            match refusals.counter.read() {
                Ok(total) if total > refusals.reported => {
                    events.push(format!(
                        "prison {}: PrisonConnect refused {} connections or datagrams to unlisted destinations ({total} in this generation)",
                        self.name,
                        total - refusals.reported
                    ));
                    refusals.reported = total;
                }
                Ok(_) => {}
                Err(e) => events.push(format!(
                    "prison {}: reading PrisonConnect's refusal counter: {e}",
                    self.name
                )),
            }
        }
        events
    }

    /// Parent: httpd exits. The namespaces die with the last process in them; the cgroups are
    /// removed. Returns what could not be cleaned up, for the error log.
    pub fn teardown(self) -> Vec<String> {
        self.cgroups.teardown()
    }
}

/// The mount plan: a first step of `build` and `dry_run`.
fn plan(prison: &Prison) -> Result<MountPlan, SetupError> {
    MountPlan::new(prison, &RealHost).map_err(|e| {
        SetupError::check(
            format!("building prison {}: planning its mounts", prison.name),
            e,
        )
    })
}

/// PrisonDir, opened now (`O_PATH`), and its (st_dev, st_ino): a first step of `build` and
/// `dry_run`.
fn open_root(prison: &Prison) -> Result<(OwnedFd, (u64, u64)), SetupError> {
    carry::open_root(&prison.dir).map_err(|e| {
        SetupError::new(
            format!("building prison {}: {}", prison.name, e.step),
            e.source,
        )
    })
}

/// PrisonIP: loads the socket programs for the prison's addresses (and PrisonConnect's
/// allow-list) and attaches them to the prison's cgroup on the cgroup2 hierarchy (created here
/// when no limit needed one). Returns PrisonConnect's refusal counter.
fn attach_network_programs(
    cgroups: &mut Cgroups,
    prison: &Prison,
) -> Result<Option<bpf::Counter>, SetupError> {
    let dir = cgroups.v2_dir().map_err(|e| named(prison, e))?;
    let (programs, counter) = network_programs(prison)?;
    bpf::attach_programs(&dir, &programs).map_err(|e| named(prison, e))?;
    Ok(counter)
}

/// PrisonIP's socket programs, with PrisonConnect's allow-list and the new map it counts its
/// refusals in: what `build` attaches and `dry_run` has the verifier check.
fn network_programs(
    prison: &Prison,
) -> Result<(Vec<sockaddr::Program>, Option<bpf::Counter>), SetupError> {
    let counter = match &prison.connect {
        Some(_) => Some(bpf::Counter::create("prison_refused").map_err(|e| {
            named(
                prison,
                SetupError::new(
                    "creating PrisonConnect's refusal counter (a BPF array map)",
                    e,
                ),
            )
        })?),
        None => None,
    };
    let connect = prison
        .connect
        .as_deref()
        .zip(counter.as_ref())
        .map(|(list, counter)| sockaddr::Connect {
            list,
            counter: counter.fd(),
        });
    Ok((sockaddr::programs(&prison.ip, connect.as_ref()), counter))
}

/// `e`, its step prefixed with the prison it was building.
fn named(prison: &Prison, e: SetupError) -> SetupError {
    SetupError {
        step: format!("building prison {}: {}", prison.name, e.step),
        source: e.source,
    }
}

fn join(fd: &OwnedFd, kind: libc::c_int, what: &str) -> Result<(), SetupError> {
    // SAFETY: `fd` is an open namespace descriptor of type `kind`.
    check_ret(unsafe { libc::setns(fd.as_raw_fd(), kind) }, || {
        format!("joining the prison's {what} namespace")
    })
    .map(drop)
}
/// The Linux backend as the glue calls it: each call is the inherent method of that name.
impl crate::jail::backend::Backend for Prepared {
    type Error = SetupError;

    fn build(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: Option<&str>,
    ) -> Result<Self, SetupError> {
        Prepared::build(prison, identity, mpm, carry)
    }
    fn dry_run(prison: &Prison, mpm: &MpmCeiling) -> Result<String, SetupError> {
        Prepared::dry_run(prison, mpm)
    }
    fn carry_over(
        prison: &Prison,
        identity: &Identity,
        mpm: &MpmCeiling,
        carry: &str,
    ) -> Result<(Self, String), SetupError> {
        Prepared::carry_over(prison, identity, mpm, carry)
    }
    /// Closes what the carry held (the claim, the previous prison's descriptors); nothing to
    /// report.
    fn retire(carry: &str) -> Vec<String> {
        Prepared::retire(carry);
        Vec::new()
    }
    fn attach(&self) -> Result<(), SetupError> {
        Prepared::attach(self)
    }
    fn verify(&self) -> Result<(), SetupError> {
        Prepared::verify(self)
    }
    fn security_summary(&self) -> String {
        Prepared::security_summary(self)
    }
    fn monitor(&mut self) -> Vec<String> {
        Prepared::monitor(self)
    }
    fn release(self) -> Option<String> {
        Prepared::release(self)
    }
    fn teardown(self) -> Vec<String> {
        Prepared::teardown(self)
    }
}
