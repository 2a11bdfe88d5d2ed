//! The prison's cgroup on the cgroup2 hierarchy: it carries PrisonIP's BPF programs, and every
//! child joins it before it enters the prison's mount namespace (where no cgroupfs exists).
//!
//! Interim: the cgroup module (issue 5) will own the prison's cgroups and expose its v2
//! directory; the lead folds this file into it then. Only the BPF part needs v2, so no
//! controller is enabled here and no `subtree_control` is written.
//!
//! Layout: `<cgroup2 mount>/<httpd's own v2 cgroup>/mod_prison-<name>-<httpd pid>-<generation>`,
//! a new one per generation, so old children keep the old generation's programs. A directory
//! is removed once empty: at teardown (httpd exits), or by the next build for the generations
//! before it and for httpd processes that no longer exist.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::bpf;
use super::sockaddr::Program;
use crate::jail::SetupError;

/// The cgroup2 mount point and the cgroup path at its root, from `/proc/self/mountinfo`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = mount.split_whitespace().skip(3);
        let root = unescape(fields.next()?);
        let point = unescape(fields.next()?);
        Some((point, root))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The calling process's cgroup2 path, from the `0::` line of `/proc/self/cgroup`.
pub fn own_v2_path(proc_cgroup: &str) -> Option<PathBuf> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| PathBuf::from(path.trim_end()))
}

/// The directory below which the prison's cgroups are created: httpd's own v2 cgroup.
pub fn parent_dir(mountinfo: &str, proc_cgroup: &str) -> Result<PathBuf, String> {
    let (point, root) = cgroup2_mount(mountinfo).ok_or(
        "PrisonIP needs the cgroup2 hierarchy for its BPF programs, but none is mounted \
         (no cgroup2 filesystem in /proc/self/mountinfo): mount one (e.g. \
         `mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified`) or remove PrisonIP",
    )?;
    let own = own_v2_path(proc_cgroup).ok_or(
        "PrisonIP needs the cgroup2 hierarchy, but /proc/self/cgroup has no cgroup2 (0::) line",
    )?;
    // A mount of a sub-tree (containers) shows the cgroups below its root.
    let relative = own.strip_prefix(&root).unwrap_or(&own);
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    Ok(point.join(relative))
}

/// One generation's cgroup.
#[derive(Debug)]
pub struct NetCgroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, written by each child.
    procs: PathBuf,
}

impl NetCgroup {
    /// Parent, root: creates this generation's cgroup for prison `name` under httpd's own
    /// cgroup2 cgroup, found through `proc` (normally `/proc`). Removes the empty ones that
    /// earlier generations left.
    pub fn create(proc: &Path, name: &str) -> Result<Self, SetupError> {
        let read = |file: &str| {
            let path = proc.join("self").join(file);
            fs::read_to_string(&path)
                .map_err(|e| SetupError::new(format!("reading {}", path.display()), e))
        };
        let parent = parent_dir(&read("mountinfo")?, &read("cgroup")?)
            .map_err(|why| SetupError::check("finding the prison's cgroup2 cgroup", why))?;
        let pid = std::process::id();
        let prefix = format!("mod_prison-{name}-");
        sweep(&parent, &prefix, proc);
        // httpd reloads the module at every restart, so a counter alone would start over:
        // the first free number is taken.
        let mut generation = 0u32;
        let dir = loop {
            let dir = parent.join(format!("{prefix}{pid}-{generation}"));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && generation < 1000 => {
                    generation += 1;
                }
                Err(e) => {
                    return Err(SetupError::new(
                        format!("creating cgroup {}", dir.display()),
                        e,
                    ))
                }
            }
        };
        Ok(Self {
            procs: dir.join("cgroup.procs"),
            dir,
        })
    }

    /// Parent: loads `programs` and attaches them to the cgroup. The attachments outlive the
    /// program descriptors, which are closed on return, and end with the cgroup.
    pub fn attach(&self, programs: &[Program]) -> Result<(), SetupError> {
        let cgroup = File::open(&self.dir)
            .map_err(|e| SetupError::new(format!("opening cgroup {}", self.dir.display()), e))?;
        for p in programs {
            let prog = bpf::load(p.prog_type, p.attach_type, p.name, &p.insns)
                .map_err(|e| SetupError::new(format!("loading BPF program {}", p.name), e))?;
            bpf::attach(&cgroup, &prog, p.attach_type).map_err(|e| {
                SetupError::new(
                    format!(
                        "attaching BPF program {} to cgroup {}",
                        p.name,
                        self.dir.display()
                    ),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Child, root, before it leaves the host's mount namespace: joins the cgroup, so every
    /// socket it and its CGIs create is under the programs.
    pub fn join(&self) -> Result<(), SetupError> {
        let step = || format!("joining cgroup {}", self.dir.display());
        let mut procs = fs::OpenOptions::new()
            .write(true)
            .open(&self.procs)
            .map_err(|e| SetupError::new(step(), e))?;
        // "0" is the writing process itself.
        procs
            .write_all(b"0")
            .map_err(|e| SetupError::new(step(), e))
    }

    /// Parent: removes the cgroup once no process is left in it, waiting up to `patience`.
    /// A cgroup still in use (old children finishing after a restart) stays for the next
    /// build's sweep.
    pub fn remove(&self, patience: Duration) {
        let started = Instant::now();
        while populated(&self.dir) && started.elapsed() < patience {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Whether processes are in the cgroup at `dir` or below (cgroup.events `populated 1`).
fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Removes the empty cgroups `<prefix><pid>-<generation>` of this httpd's earlier generations
/// and of httpd processes that are gone. One in use refuses (EBUSY) and stays.
fn sweep(parent: &Path, prefix: &str, proc: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == own || !proc.join(pid.to_string()).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw
36 25 0:31 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
41 36 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
44 36 0:41 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
";

    #[test]
    fn finds_the_cgroup2_mount_on_a_hybrid_host() {
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(("/sys/fs/cgroup/unified".into(), "/".into()))
        );
        let cgroup = "4:memory:/x\n0::/system.slice/apache2.service\n";
        assert_eq!(
            parent_dir(HYBRID, cgroup),
            Ok("/sys/fs/cgroup/unified/system.slice/apache2.service".into())
        );
        assert_eq!(
            parent_dir(HYBRID, "0::/\n"),
            Ok("/sys/fs/cgroup/unified".into())
        );
    }

    #[test]
    fn finds_it_on_a_unified_host_and_in_a_container() {
        let unified = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parent_dir(unified, "0::/system.slice/apache2.service\n"),
            Ok("/sys/fs/cgroup/system.slice/apache2.service".into())
        );
        // A container's mount of its own sub-tree, seen without a cgroup namespace.
        let sub = "30 25 0:26 /lxc/web /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parent_dir(sub, "0::/lxc/web/apache\n"),
            Ok("/sys/fs/cgroup/apache".into())
        );
        let spaced = "30 25 0:26 / /mnt/cg\\0402 rw - cgroup2 none rw\n";
        assert_eq!(parent_dir(spaced, "0::/\n"), Ok("/mnt/cg 2".into()));
    }

    #[test]
    fn without_cgroup2_the_error_says_what_is_missing() {
        let legacy = "44 36 0:41 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let err = parent_dir(legacy, "4:memory:/\n0::/\n").unwrap_err();
        assert!(
            err.contains("cgroup2") && err.contains("none is mounted"),
            "{err}"
        );
        let err = parent_dir(HYBRID, "4:memory:/\n").unwrap_err();
        assert!(err.contains("no cgroup2 (0::) line"), "{err}");
    }

    #[test]
    fn sweep_removes_only_empty_dirs_of_this_prison_and_of_dead_parents() {
        let base = std::env::temp_dir().join(format!("netcg-sweep-{}", std::process::id()));
        let proc = base.join("proc");
        let parent = base.join("cg");
        let own = std::process::id();
        fs::create_dir_all(proc.join("4242")).unwrap();
        for name in [
            format!("mod_prison-web-{own}-0"),
            "mod_prison-web-4242-0".into(),
            "mod_prison-web-999999-0".into(),
            format!("mod_prison-other-{own}-0"),
            "unrelated".into(),
        ] {
            fs::create_dir_all(parent.join(name)).unwrap();
        }
        // A busy cgroup is simulated by a non-empty directory (rmdir fails alike).
        fs::write(parent.join("mod_prison-web-999999-0/busy"), "").unwrap();
        fs::create_dir_all(parent.join("mod_prison-web-1-0")).unwrap();
        sweep(&parent, "mod_prison-web-", &proc);
        let mut left: Vec<String> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("mod_prison-other-{own}-0"),
                "mod_prison-web-4242-0".into(),
                "mod_prison-web-999999-0".into(),
                "unrelated".to_string(),
            ]
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
