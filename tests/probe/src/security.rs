//! What the kernel lets the probe do: capabilities, no_new_privs, seccomp, CPU affinity,
//! thread count.

use crate::json::{Json, Object};
use crate::sys::{cvt, report, Errno, Outcome};

/// capabilities, no_new_privs, seccomp, cpu_affinity, threads.
pub fn restrictions() -> Object {
    Object::new()
        .with("capabilities", report(capabilities()))
        .with("no_new_privs", report(no_new_privs()))
        .with("seccomp", report(seccomp()))
        .with("cpu_affinity", report(cpu_affinity()))
        .with("threads", threads())
}

fn capabilities() -> Outcome {
    // rustix keeps every bit the kernel sets, also those of capabilities it has no name for.
    let sets = rustix::thread::capabilities(None).map_err(std::io::Error::from)?;
    let (bounding, last_cap) = bounding_set()?;
    // SAFETY: PR_GET_SECUREBITS takes no pointers.
    let securebits = cvt(unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) })?;
    Ok(Object::new()
        .with("effective", hex(sets.effective.bits()))
        .with("permitted", hex(sets.permitted.bits()))
        .with("inheritable", hex(sets.inheritable.bits()))
        .with("bounding", hex(bounding))
        .with("last_cap", last_cap)
        .with(
            "securebits",
            hex(u64::try_from(securebits).unwrap_or_default()),
        ))
}

/// The bounding set, read one capability at a time until the kernel says EINVAL (past its
/// last capability). Also returns that last capability number.
fn bounding_set() -> Result<(u64, i32), Errno> {
    let mut set = 0u64;
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_READ takes a capability number, no pointers.
        match cvt(unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) }) {
            Ok(0) => {}
            Ok(_) => set |= 1 << cap,
            Err(Errno(libc::EINVAL)) => return Ok((set, cap - 1)),
            Err(errno) => return Err(errno),
        }
    }
    Ok((set, 63))
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

fn no_new_privs() -> Outcome {
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
    let value = cvt(unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) })?;
    Ok(Object::new().with("value", value))
}

/// 0 = none, 2 = filter. (In strict mode, 1, the prctl itself would kill the probe.)
fn seccomp() -> Outcome {
    // SAFETY: PR_GET_SECCOMP takes no pointers.
    let mode = cvt(unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) })?;
    Ok(Object::new().with("mode", mode))
}

fn cpu_affinity() -> Outcome {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, so the bit lies inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(Object::new()
        .with("list", cpu_list(&cpus))
        .with("count", cpus.len()))
}

/// The kernel's list form, as in `Cpus_allowed_list`: `[0, 1, 2, 5]` -> "0-2,5".
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The `Threads:` line of /proc/self/status, or null when /proc is not there.
fn threads() -> Json {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Json::Null;
    };
    status_field(&status, "Threads")
        .and_then(|n| n.parse::<u64>().ok())
        .into()
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_use_the_kernel_form() {
        assert_eq!(cpu_list(&[]), "");
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[0, 1]), "0-1");
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[3, 9]), "3,9");
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tprobe\nThreads:\t3\nCpus_allowed_list:\t0-1\n";
        assert_eq!(status_field(status, "Threads"), Some("3"));
        assert_eq!(status_field(status, "Cpus_allowed_list"), Some("0-1"));
        assert_eq!(status_field(status, "Thread"), None);
    }

    #[test]
    fn this_process_has_a_bounding_set() {
        let (_, last_cap) = bounding_set().expect("PR_CAPBSET_READ");
        // CAP_AUDIT_READ (37) exists on every kernel this project supports.
        assert!(last_cap >= 37, "{last_cap}");
    }
}
