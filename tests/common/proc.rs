//! The host seen through /proc: processes, their ids and namespaces, and the mount table.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every pid on the host now.
pub fn pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .expect("reading /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

pub fn alive(pid: i32) -> bool {
    // A zombie is as good as gone: it holds no namespace, mount or file.
    status_field(pid, "State").is_some_and(|s| !s.starts_with('Z'))
}

pub fn kill9(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A field of /proc/PID/status, without its name.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().to_owned())
    })
}

pub fn ppid(pid: i32) -> Option<i32> {
    status_field(pid, "PPid")?.parse().ok()
}

/// The four ids (real, effective, saved, fs) of a `Uid:` or `Gid:` line.
pub fn ids(pid: i32, field: &str) -> Vec<u32> {
    status_field(pid, field)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The target of /proc/PID/ns/KIND, e.g. `mnt:[4026532177]`.
pub fn namespace(pid: i32, kind: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.display().to_string())
}

pub fn dev_ino(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// The host's mount table, one line per mount point (mount id and parent dropped), for
/// before/after comparisons.
pub fn host_mounts() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("reading mountinfo")
        .lines()
        .map(|l| l.split_whitespace().skip(4).take(1).collect::<String>())
        .collect()
}
