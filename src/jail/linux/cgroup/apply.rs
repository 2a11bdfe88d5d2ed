//! Applying the plan: creating the prison's cgroup directories (enabling v2 controllers first),
//! writing each limit before anyone joins, and joining them in each child.

use std::os::fd::AsRawFd;

use super::plan::{Group, Setting, Value};
use super::{fs, Cgroups};
use crate::jail::SetupError;

impl Cgroups {
    /// mkdir one cgroup and write its limits; it is recorded first, so a failure removes it.
    pub(super) fn apply(&mut self, group: Group) -> Result<(), SetupError> {
        let step = format!("creating the cgroups of prison {}", self.prison);
        for controller in &group.enable {
            let control = group.base.join("cgroup.subtree_control");
            fs::write(&control, &format!("+{controller}")).map_err(|e| {
                hint(
                    e,
                    libc::EBUSY,
                    "cgroup v2 hands no controller to the children of a cgroup that holds \
                     processes: run httpd in a leaf of its delegated cgroup (systemd: \
                     DelegateSubgroup=main)",
                )
            })?;
        }
        self.tree.mkdir(&group.dir).map_err(|e| {
            let e = SetupError::new(format!("{step}: mkdir {}", group.dir.display()), e);
            let e = hint(
                e,
                libc::EEXIST,
                "another httpd with the same PrisonName uses it; PrisonName must be unique",
            );
            let e = hint(
                e,
                libc::EACCES,
                "httpd's cgroup is not writable: httpd must start as root and its cgroup must be delegated to it",
            );
            hint(
                e,
                libc::EROFS,
                "the cgroup filesystem is mounted read-only (a container?)",
            )
        })?;
        let settings = group.settings.clone();
        let base = group.base.clone();
        let dir = group.dir.clone();
        self.groups.push(group);
        for Setting { file, value } in settings {
            let value = match value {
                Value::Text(text) => text,
                Value::Cpus(cpus) => cpus.to_string(),
                Value::FromBase => fs::read(&base.join(file))?.trim().to_owned(),
            };
            fs::write(&dir.join(file), &value).map_err(|e| match file {
                "cpuset.cpus" => hint(
                    e,
                    libc::EINVAL,
                    &format!("PrisonCPU must lie within {}/cpuset.cpus", base.display()),
                ),
                _ => e,
            })?;
        }
        Ok(())
    }

    /// Child, root, before `setns(mnt)` (the host's cgroupfs must still be visible): moves
    /// the calling process into every cgroup of the prison.
    pub fn join(&self) -> Result<(), SetupError> {
        for group in &self.groups {
            fs::write(&group.dir.join("cgroup.procs"), "0").map_err(|e| SetupError {
                step: format!("joining the cgroup of prison {}: {}", self.prison, e.step),
                source: e.source,
            })?;
        }
        if let Some((efd, usage)) = self.memory.as_ref().and_then(|m| m.threshold.as_ref()) {
            for fd in [efd, usage] {
                // SAFETY: the child's copies of the parent's watch descriptors; the child never
                // uses them (and never drops its Prepared), and must not read the parent's events.
                unsafe { libc::close(fd.as_raw_fd()) };
            }
        }
        Ok(())
    }
}

/// Adds what to do about `errno` to the error's step.
fn hint(e: SetupError, errno: i32, what: &str) -> SetupError {
    if e.source.raw_os_error() == Some(errno) {
        SetupError {
            step: format!("{} ({what})", e.step),
            source: e.source,
        }
    } else {
        e
    }
}
