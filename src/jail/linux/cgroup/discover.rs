//! Discovery: reads where httpd's cgroups are (the [`Layout`] from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`) and, on v2, where the prison's cgroup goes and what it is offered.

use std::path::Path;

use super::fs;
use super::layout::{Hierarchy, Layout};
use super::plan::V2Facts;
use crate::jail::SetupError;

/// The cgroup layout that `proc_root` (`/proc`) shows for this process.
pub(super) fn layout(proc_root: &Path) -> Result<Layout, SetupError> {
    let own = fs::read(&proc_root.join("self/cgroup"))?;
    let mounts = fs::read(&proc_root.join("self/mountinfo"))?;
    Ok(Layout::parse(&mounts, &own))
}

/// Where the prison's v2 cgroup goes when it needs controllers, and what that cgroup offers.
///
/// cgroup v2 hands controllers only to the children of a cgroup without processes (the
/// root excepted), and httpd is in its own cgroup. So the prison's cgroup goes beside httpd's,
/// in the parent, which must be delegated to httpd (systemd: `Delegate=yes` marks the unit's
/// cgroup with the `trusted.delegate` xattr; `DelegateSubgroup=main` puts httpd in a leaf).
pub(super) fn v2_facts(v2: &Hierarchy) -> Result<V2Facts, SetupError> {
    let step = "choosing where the prison's cgroup v2 goes";
    let base = if v2.own == v2.mount {
        v2.own.clone()
    } else {
        match v2.own.parent() {
            Some(parent) if fs::delegated(parent) => parent.to_owned(),
            _ if fs::delegated(&v2.own) => {
                return Err(SetupError::check(
                    step,
                    format!(
                        "httpd runs in its delegated cgroup {} itself, and cgroup v2 gives no \
                         controller to the children of a cgroup that holds processes; run httpd \
                         in a subgroup (systemd >= 254: DelegateSubgroup=main in httpd's unit)",
                        v2.own.display()
                    ),
                ))
            }
            _ => {
                return Err(SetupError::check(
                    step,
                    format!(
                        "httpd's cgroup {} is not delegated to httpd (no trusted.delegate xattr \
                         on it or its parent), so systemd owns it and may undo the prison's \
                         limits; add Delegate=yes and DelegateSubgroup=main to httpd's unit \
                         (e.g. a drop-in for apache2.service)",
                        v2.own.display()
                    ),
                ))
            }
        }
    };
    let words = |file: &str| -> Result<_, SetupError> {
        Ok(fs::read(&base.join(file))?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    };
    Ok(V2Facts {
        available: words("cgroup.controllers")?,
        enabled: words("cgroup.subtree_control")?,
        base,
    })
}
