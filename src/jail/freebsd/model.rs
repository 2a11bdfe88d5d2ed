//! A model of the FreeBSD kernel's jail state, and the backend's whole lifecycle driven
//! against it on Linux: build -> children attach -> graceful restart with carry -> crash of
//! the parent or stop -> the reaper, asserting the calls made and the state left.
//!
//! The model follows the man page facts of docs/freebsd-api.md, the same ones sys.rs cites:
//! jail_set(2) (`JAIL_CREATE` needs `persist`, EEXIST for a live name, create-only parameters
//! refused on update, ENOENT for a gone or dying jail), a jail without `persist` dies with its
//! last process and is then invisible by name and jid, jail_attach(2) needs root and no open
//! directory, cpuset(2) only shrinks a jail, rctl rules are keyed by name and outlive the jail,
//! a deny rule replaces one differing only in amount, and the reaper's pipe reads EOF only once
//! every copy of its write end is closed (kqueue(2) `EVFILT_READ`), its `NOTE_EXIT` fires when
//! the parent dies.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::kernel::{Jid, Kernel, Racct, SetMode};
use super::plan::{MaskWord, Param};
use super::reaper::{self, Job, Wake, Wakeups};
use super::{Error, Jail};
use crate::config::{CpuSet, MemoryLimits, Origins, Prison, PrisonIp, PrisonName, Security, Tmp};
use crate::jail::{Identity, SetupError};

const MASTER: u32 = 100;
const WWW_UID: u32 = 33;

#[derive(Debug)]
struct ModelJail {
    jid: Jid,
    name: String,
    path: String,
    persist: bool,
    dying: bool,
    params: BTreeMap<String, Option<String>>,
    cpus: Option<Vec<MaskWord>>,
}

#[derive(Debug)]
struct Proc {
    alive: bool,
    euid: u32,
    jail: Option<Jid>,
    /// Inherited directory descriptors (httpd's config directories, say).
    open_dirs: bool,
}

#[derive(Debug)]
struct Pipe {
    job: Job,
    /// The processes holding a copy of the write end.
    holders: BTreeSet<u32>,
    writes: VecDeque<Option<u64>>,
}

#[derive(Debug)]
struct State {
    calls: Vec<String>,
    jails: Vec<ModelJail>,
    next_jid: Jid,
    rules: Vec<String>,
    pipes: BTreeMap<RawFd, Pipe>,
    next_fd: RawFd,
    next_pid: u32,
    procs: BTreeMap<u32, Proc>,
    /// The process making the calls.
    current: u32,
    racct: Racct,
    memoryuse: u64,
    /// One-second timeouts the reaper may see before anything else happens.
    ticks: u32,
    reaper_log: Vec<String>,
    sleeps: u32,
}

impl State {
    fn call(&mut self, text: String) {
        self.calls.push(text);
    }

    fn alive(&mut self, jid: Jid) -> Option<&mut ModelJail> {
        self.jails.iter_mut().find(|j| j.jid == jid && !j.dying)
    }

    fn alive_named(&self, name: &str) -> Option<&ModelJail> {
        self.jails.iter().find(|j| j.name == name && !j.dying)
    }

    /// A jail without `persist` dies with its last process (API "persist").
    fn reap_jails(&mut self) {
        for jail in &mut self.jails {
            let used = self
                .procs
                .values()
                .any(|p| p.alive && p.jail == Some(jail.jid));
            if !jail.persist && !used {
                jail.dying = true;
            }
        }
    }

    fn proc(&mut self) -> &mut Proc {
        let current = self.current;
        self.procs
            .get_mut(&current)
            .expect("the current process exists")
    }
}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

fn cpu_list(mask: &[MaskWord]) -> String {
    let bits = MaskWord::BITS as usize;
    let cpus: Vec<String> = (0..mask.len() * bits)
        .filter(|&n| mask[n / bits] >> (n % bits) & 1 == 1)
        .map(|n| n.to_string())
        .collect();
    cpus.join(",")
}

/// The model kernel; clones share one state (the kernel's).
#[derive(Debug, Clone)]
struct Model(Rc<RefCell<State>>);

/// The parent's end of a reaper's pipe in the model: dropping it closes the holder's copy.
#[derive(Debug)]
struct ModelPipe {
    fd: RawFd,
    model: Model,
}

impl Drop for ModelPipe {
    fn drop(&mut self) {
        let mut s = self.model.0.borrow_mut();
        let current = s.current;
        s.call(format!("close({})", self.fd));
        if let Some(pipe) = s.pipes.get_mut(&self.fd) {
            pipe.holders.remove(&current);
        }
    }
}

impl Model {
    fn new() -> Self {
        let mut procs = BTreeMap::new();
        procs.insert(
            MASTER,
            Proc {
                alive: true,
                euid: 0,
                jail: None,
                open_dirs: true,
            },
        );
        Self(Rc::new(RefCell::new(State {
            calls: Vec::new(),
            jails: Vec::new(),
            next_jid: 1,
            rules: Vec::new(),
            pipes: BTreeMap::new(),
            next_fd: 10,
            next_pid: 200,
            procs,
            current: MASTER,
            racct: Racct::Enabled,
            memoryuse: 0,
            ticks: 0,
            reaper_log: Vec::new(),
            sleeps: 0,
        })))
    }

    fn state(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }

    /// The calls made since the last look, and forgets them.
    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state().calls)
    }

    /// fork(2) of an httpd child by the parent: it inherits the parent's descriptors, the
    /// reaper pipes included.
    fn fork_child(&self) -> u32 {
        let mut s = self.state();
        let pid = s.next_pid;
        s.next_pid += 1;
        let parent = s.current;
        for pipe in s.pipes.values_mut() {
            if pipe.holders.contains(&parent) {
                pipe.holders.insert(pid);
            }
        }
        s.procs.insert(
            pid,
            Proc {
                alive: true,
                euid: 0,
                jail: None,
                open_dirs: true,
            },
        );
        pid
    }

    /// Runs `f` as process `pid`.
    fn as_process<T>(&self, pid: u32, f: impl FnOnce() -> T) -> T {
        let before = std::mem::replace(&mut self.state().current, pid);
        let result = f();
        self.state().current = before;
        result
    }

    /// A process exits (or is killed): the kernel closes its descriptors.
    fn exit(&self, pid: u32) {
        let mut s = self.state();
        if let Some(p) = s.procs.get_mut(&pid) {
            p.alive = false;
        }
        for pipe in s.pipes.values_mut() {
            pipe.holders.remove(&pid);
        }
        s.reap_jails();
    }

    /// The jail a process is in.
    fn jail_of(&self, pid: u32) -> Option<Jid> {
        self.state().procs[&pid].jail
    }

    fn live_jails(&self) -> Vec<(Jid, String)> {
        let s = self.state();
        s.jails
            .iter()
            .filter(|j| !j.dying)
            .map(|j| (j.jid, j.name.clone()))
            .collect()
    }

    fn rules(&self) -> Vec<String> {
        self.state().rules.clone()
    }

    fn params(&self, jid: Jid) -> BTreeMap<String, Option<String>> {
        let s = self.state();
        s.jails
            .iter()
            .find(|j| j.jid == jid)
            .expect("the jail exists")
            .params
            .clone()
    }

    fn cpus(&self, jid: Jid) -> Option<String> {
        let s = self.state();
        let jail = s.jails.iter().find(|j| j.jid == jid)?;
        jail.cpus.as_deref().map(cpu_list)
    }

    /// What the reaper of pipe `fd` would wake up for now; `None`: it would block.
    fn pending(&self, fd: RawFd, tick: bool) -> Option<Wake> {
        let mut s = self.state();
        let master_alive = s.procs[&MASTER].alive;
        let ticks = s.ticks;
        let pipe = s.pipes.get_mut(&fd)?;
        if let Some(report) = pipe.writes.pop_front() {
            return Some(Wake::Report(report));
        }
        if tick && ticks > 0 {
            s.ticks -= 1;
            return Some(Wake::Tick);
        }
        if pipe.holders.is_empty() {
            return Some(Wake::Eof);
        }
        if !master_alive {
            return Some(Wake::MasterExited);
        }
        None
    }

    /// The reaper of pipe `fd`, from its fork to its `_exit`, as a process of its own.
    fn run_reaper(&self, fd: RawFd) {
        let job = self.state().pipes[&fd].job.clone();
        let pid = {
            let mut s = self.state();
            let pid = s.next_pid;
            s.next_pid += 1;
            s.procs.insert(
                pid,
                Proc {
                    alive: true,
                    euid: 0,
                    jail: None,
                    open_dirs: false,
                },
            );
            pid
        };
        let mut wakeups = ModelWakeups {
            model: self.clone(),
            fd,
        };
        self.as_process(pid, || reaper::serve(self, &mut wakeups, &job));
        self.exit(pid);
    }
}

struct ModelWakeups {
    model: Model,
    fd: RawFd,
}

impl Wakeups for ModelWakeups {
    fn next(&mut self, tick: bool) -> Wake {
        match self.model.pending(self.fd, tick) {
            Some(wake) => wake,
            None => panic!("the reaper of pipe {} would wait forever", self.fd),
        }
    }
}

impl Kernel for Model {
    type Pipe = ModelPipe;

    fn euid(&self) -> u32 {
        self.state().proc().euid
    }

    fn pid(&self) -> u32 {
        self.state().current
    }

    fn file_id(&self, path: &Path) -> io::Result<(u64, u64)> {
        let mut s = self.state();
        // A jailed process's "/" is its jail's path.
        let jailed_root = match s.proc().jail {
            Some(jid) if path == Path::new("/") => s
                .jails
                .iter()
                .find(|j| j.jid == jid)
                .map(|j| j.path.clone()),
            _ => None,
        };
        let path = jailed_root.map_or_else(|| path.to_path_buf(), PathBuf::from);
        let ino = path
            .to_string_lossy()
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Ok((1, ino))
    }

    fn hostname(&self) -> io::Result<String> {
        let mut s = self.state();
        let Some(jid) = s.proc().jail else {
            return Ok("host.example".to_owned());
        };
        let jail = s
            .jails
            .iter()
            .find(|j| j.jid == jid)
            .expect("attached jail");
        Ok(jail
            .params
            .get("host.hostname")
            .cloned()
            .flatten()
            .unwrap_or_default())
    }

    fn jailed(&self) -> bool {
        self.state().proc().jail.is_some()
    }

    fn switch_user(&self, identity: &Identity) -> Result<(), SetupError> {
        let mut s = self.state();
        s.call(format!("switch_user({})", identity.uid));
        s.proc().euid = identity.uid;
        Ok(())
    }

    fn verify_user(&self, identity: &Identity) -> Result<(), SetupError> {
        let euid = self.state().proc().euid;
        if euid == 0 || euid != identity.uid {
            return Err(SetupError::check(
                "checking the child's user",
                format!("uid {euid}"),
            ));
        }
        Ok(())
    }

    fn set_params(&self, params: &[Param], mode: SetMode) -> io::Result<Jid> {
        let mut s = self.state();
        let map: BTreeMap<String, Option<String>> = params
            .iter()
            .map(|p| (p.name.to_owned(), p.value.clone()))
            .collect();
        let key = |k: &str| map.get(k).cloned().flatten();
        match mode {
            SetMode::Create => {
                let name = key("name").expect("a name");
                s.call(format!("jail_set(CREATE, name={name})"));
                if s.proc().euid != 0 {
                    return Err(errno(libc::EPERM));
                }
                // "new jail must persist or attach".
                if !map.contains_key("persist") {
                    return Err(errno(libc::EINVAL));
                }
                if s.alive_named(&name).is_some() {
                    return Err(errno(libc::EEXIST));
                }
                let jid = s.next_jid;
                s.next_jid += 1;
                s.jails.push(ModelJail {
                    jid,
                    name,
                    path: key("path").expect("a path"),
                    persist: true,
                    dying: false,
                    params: map,
                    cpus: None,
                });
                Ok(jid)
            }
            SetMode::Update => {
                let jid: Jid = key("jid").expect("a jid").parse().expect("a number");
                s.call(format!("jail_set(UPDATE, jid={jid})"));
                // Create-only parameters with any UPDATE bit: EINVAL.
                if ["path", "ip4", "ip6", "ip4.addr", "ip6.addr", "name"]
                    .iter()
                    .any(|k| map.contains_key(*k))
                {
                    return Err(errno(libc::EINVAL));
                }
                let jail = s.alive(jid).ok_or_else(|| errno(libc::ENOENT))?;
                for (k, v) in map {
                    match k.as_str() {
                        "persist" => jail.persist = true,
                        "nopersist" => jail.persist = false,
                        _ => {}
                    }
                    jail.params.insert(k, v);
                }
                s.reap_jails();
                Ok(jid)
            }
        }
    }

    fn clear_persist(&self, jid: Jid) -> io::Result<()> {
        let mut s = self.state();
        s.call(format!("nopersist({jid})"));
        let jail = s.alive(jid).ok_or_else(|| errno(libc::ENOENT))?;
        jail.persist = false;
        s.reap_jails();
        Ok(())
    }

    fn lookup(&self, jid: Jid) -> io::Result<(String, String)> {
        let mut s = self.state();
        s.call(format!("jail_get(jid={jid})"));
        let jail = s.alive(jid).ok_or_else(|| errno(libc::ENOENT))?;
        Ok((jail.name.clone(), jail.path.clone()))
    }

    fn jid_by_name(&self, name: &str) -> io::Result<Option<Jid>> {
        let mut s = self.state();
        s.call(format!("jail_get(name={name})"));
        Ok(s.alive_named(name).map(|j| j.jid))
    }

    fn close_directory_fds(&self) -> io::Result<()> {
        let mut s = self.state();
        s.call("close_directory_fds".to_owned());
        s.proc().open_dirs = false;
        Ok(())
    }

    fn attach(&self, jid: Jid) -> io::Result<()> {
        let mut s = self.state();
        s.call(format!("jail_attach({jid})"));
        if s.proc().euid != 0 || s.proc().open_dirs {
            return Err(errno(libc::EPERM));
        }
        if s.alive(jid).is_none() {
            return Err(errno(libc::EINVAL));
        }
        s.proc().jail = Some(jid);
        Ok(())
    }

    fn cpusetsize(&self) -> usize {
        // amd64 FreeBSD 14: MAXCPU 1024.
        128
    }

    fn set_jail_cpus(&self, jid: Jid, mask: &[MaskWord]) -> io::Result<()> {
        let mut s = self.state();
        s.call(format!(
            "cpuset_setaffinity(jail {jid}, {})",
            cpu_list(mask)
        ));
        let jail = s.alive(jid).ok_or_else(|| errno(libc::ESRCH))?;
        // A jail's cpuset only shrinks.
        if let Some(old) = &jail.cpus {
            if mask.iter().zip(old).any(|(new, old)| new & !old != 0) {
                return Err(errno(libc::EINVAL));
            }
        }
        jail.cpus = Some(mask.to_vec());
        Ok(())
    }

    fn racct(&self) -> Racct {
        self.state().racct
    }

    fn rctl_add(&self, rule: &str) -> io::Result<()> {
        let mut s = self.state();
        s.call(format!("rctl_add_rule({rule})"));
        if s.racct != Racct::Enabled {
            return Err(errno(libc::ENOSYS));
        }
        let (filter, _) = rule
            .split_once('=')
            .expect("subject:id:resource:action=amount");
        if filter.ends_with(":deny") {
            // A deny rule replaces the deny rules that differ only in amount.
            s.rules
                .retain(|r| r.split_once('=').map(|(f, _)| f) != Some(filter));
        } else {
            s.rules.retain(|r| r != rule);
        }
        s.rules.push(rule.to_owned());
        Ok(())
    }

    fn rctl_remove(&self, filter: &str) -> io::Result<()> {
        let mut s = self.state();
        s.call(format!("rctl_remove_rule({filter})"));
        if s.racct != Racct::Enabled {
            return Err(errno(libc::ENOSYS));
        }
        s.rules.retain(|r| {
            !(r.starts_with(filter) && matches!(r.as_bytes().get(filter.len()), Some(b':' | b'=')))
        });
        Ok(())
    }

    fn rctl_usage(&self, filter: &str) -> io::Result<String> {
        let mut s = self.state();
        s.call(format!("rctl_get_racct({filter})"));
        Ok(format!("cputime=0,memoryuse={},maxproc=1", s.memoryuse))
    }

    fn spawn_reaper(&self, job: &Job) -> io::Result<ModelPipe> {
        let mut s = self.state();
        let fd = s.next_fd;
        s.next_fd += 1;
        s.call(format!("reaper(jail {}, {}) = {fd}", job.jid, job.name));
        let holders = BTreeSet::from([s.current]);
        s.pipes.insert(
            fd,
            Pipe {
                job: job.clone(),
                holders,
                writes: VecDeque::new(),
            },
        );
        Ok(ModelPipe {
            fd,
            model: self.clone(),
        })
    }

    fn pipe_into_raw(&self, pipe: ModelPipe) -> RawFd {
        ManuallyDrop::new(pipe).fd
    }

    unsafe fn adopt_pipe(&self, fd: RawFd) -> io::Result<ModelPipe> {
        let mut s = self.state();
        s.call(format!("adopt({fd})"));
        let current = s.current;
        match s.pipes.get(&fd) {
            Some(pipe) if pipe.holders.contains(&current) => Ok(ModelPipe {
                fd,
                model: self.clone(),
            }),
            _ => Err(errno(libc::EBADF)),
        }
    }

    fn send_report(&self, pipe: &ModelPipe, report: Option<u64>) -> io::Result<()> {
        let mut s = self.state();
        s.call(format!("write({}, {report:?})", pipe.fd));
        let pipe = s
            .pipes
            .get_mut(&pipe.fd)
            .ok_or_else(|| errno(libc::EBADF))?;
        pipe.writes.push_back(report);
        Ok(())
    }

    unsafe fn close_inherited(&self, fd: RawFd) {
        let mut s = self.state();
        s.call(format!("close({fd})"));
        let current = s.current;
        if let Some(pipe) = s.pipes.get_mut(&fd) {
            pipe.holders.remove(&current);
        }
    }

    fn sleep(&self) {
        let mut s = self.state();
        s.call("sleep(1)".to_owned());
        s.sleeps += 1;
        assert!(s.sleeps < 20, "the reaper waits forever for a jail to die");
        // A second passes: the children of a jail that no longer persists finish their
        // requests and exit (httpd retires old-generation children at a graceful restart).
        let ending: Vec<u32> = s
            .procs
            .iter()
            .filter(|(_, p)| {
                p.alive
                    && p.jail
                        .is_some_and(|jid| s.jails.iter().any(|j| j.jid == jid && !j.persist))
            })
            .map(|(pid, _)| *pid)
            .collect();
        drop(s);
        for pid in ending {
            self.exit(pid);
        }
    }

    fn reaper_log(&self, line: &str) {
        self.state().reaper_log.push(line.to_owned());
    }
}

// ---- the lifecycle ---------------------------------------------------------------------------

fn prison(edit: impl FnOnce(&mut Prison)) -> Prison {
    let mut p = Prison {
        name: PrisonName::parse("www").unwrap(),
        dir: PathBuf::from("/usr/jails/www"),
        ip: PrisonIp::default(),
        security: Security::All,
        cpus: None,
        memory: MemoryLimits::default(),
        binds: Vec::new(),
        processes: None,
        runtime_dir: None,
        tmp: Tmp::Default,
        connect: None,
        origins: Origins::default(),
    };
    edit(&mut p);
    p
}

fn limited(p: &mut Prison) {
    p.cpus = Some(CpuSet::parse("0-1").unwrap());
    p.memory = MemoryLimits {
        report: Some(400 << 20),
        deny: Some(512 << 20),
    };
    p.processes = Some(64);
}

fn identity() -> Identity {
    Identity {
        user_name: "www".to_owned(),
        uid: WWW_UID,
        gid: WWW_UID,
        groups: vec![WWW_UID],
    }
}

/// A child of the parent, forked now, joining the jail.
fn child_attaches(model: &Model, jail: &Jail<Model>) -> u32 {
    let pid = model.fork_child();
    model
        .as_process(pid, || jail.attach().and_then(|()| jail.verify_child()))
        .unwrap_or_else(|e| panic!("child {pid}: {e}"));
    pid
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_graceful_restart_reuses_the_jail_and_a_crash_of_the_parent_leaves_nothing() {
    let model = Model::new();
    let www = prison(limited);
    let jail = Jail::build_with(model.clone(), &www, &identity(), None).unwrap();
    assert_eq!(
        model.calls(),
        strings(&[
            "jail_get(name=www)",
            // Rules outlive jails: a previous jail's of this name must not apply.
            "rctl_remove_rule(jail:www)",
            "jail_set(CREATE, name=www)",
            "reaper(jail 1, www) = 10",
            "cpuset_setaffinity(jail 1, 0,1)",
            // devctl rules stack: removed before the new one is added; deny rules replace.
            "rctl_remove_rule(jail:www:memoryuse:devctl)",
            "rctl_add_rule(jail:www:memoryuse:devctl=419430400)",
            "rctl_add_rule(jail:www:memoryuse:deny=536870912)",
            "rctl_add_rule(jail:www:maxproc:deny=64)",
        ])
    );
    let params = model.params(1);
    for (key, value) in [
        ("name", Some("www")),
        ("path", Some("/usr/jails/www")),
        ("host.hostname", Some("www")),
        ("persist", None),
        ("children.max", Some("0")),
        ("securelevel", Some("3")),
        ("ip4", Some("inherit")),
    ] {
        assert_eq!(params.get(key), Some(&value.map(str::to_owned)), "{key}");
    }
    assert_eq!(model.cpus(1).as_deref(), Some("0,1"));
    let mut jail = jail;
    assert!(
        jail.monitor().is_empty(),
        "nothing to note at a first start"
    );

    // Children: each closes its copy of the reaper's pipe, then joins and switches user.
    let first = child_attaches(&model, &jail);
    let second = child_attaches(&model, &jail);
    assert_eq!(
        (model.jail_of(first), model.jail_of(second)),
        (Some(1), Some(1))
    );
    let calls = model.calls();
    assert_eq!(
        calls[..4],
        strings(&[
            "close(10)",
            "close_directory_fds",
            "jail_attach(1)",
            "switch_user(33)"
        ])
    );
    // Negative control: a child that never attached fails verification.
    let stray = model.fork_child();
    let err = model.as_process(stray, || jail.verify_child()).unwrap_err();
    assert!(
        err.to_string().contains("checking the child's user"),
        "{err}"
    );
    model.exit(stray);

    // Graceful restart, same configuration: the live jail is adopted and updated.
    let carry = jail.release().expect("the parent has a carry");
    assert!(
        carry.starts_with("jid=1;fd=10;master=100;name=www;"),
        "{carry}"
    );
    let jail = Jail::build_with(model.clone(), &www, &identity(), Some(&carry)).unwrap();
    assert_eq!(
        model.calls(),
        strings(&[
            "adopt(10)",
            "jail_get(jid=1)",
            "jail_set(UPDATE, jid=1)",
            "cpuset_setaffinity(jail 1, 0,1)",
            "rctl_remove_rule(jail:www:memoryuse:devctl)",
            "rctl_add_rule(jail:www:memoryuse:devctl=419430400)",
            "rctl_add_rule(jail:www:memoryuse:deny=536870912)",
            "rctl_add_rule(jail:www:maxproc:deny=64)",
            "write(10, Some(419430400))",
        ])
    );
    assert_eq!(model.live_jails(), [(1, "www".to_owned())]);
    assert_eq!(model.rules().len(), 3, "{:?}", model.rules());
    let third = child_attaches(&model, &jail);
    assert_eq!(model.jail_of(third), Some(1));
    model.calls();

    // The parent is killed: no teardown runs, the kernel closes its descriptors.
    std::mem::forget(jail);
    model.exit(MASTER);
    assert_eq!(model.live_jails().len(), 1, "persist keeps the jail");
    model.run_reaper(10);
    assert_eq!(
        model.calls(),
        strings(&[
            "nopersist(1)",
            "jail_get(jid=1)",
            "sleep(1)",
            "jail_get(jid=1)",
            "jail_get(name=www)",
            "rctl_remove_rule(jail:www)",
        ])
    );
    assert_eq!(model.live_jails(), []);
    assert_eq!(model.rules(), Vec::<String>::new());
    assert_eq!(model.state().reaper_log, Vec::<String>::new());
}

#[test]
fn a_changed_create_only_parameter_makes_a_new_jail_and_stop_removes_both() {
    let model = Model::new();
    let jail = Jail::build_with(model.clone(), &prison(limited), &identity(), None).unwrap();
    let old_child = child_attaches(&model, &jail);
    let carry = jail.release().unwrap();
    model.calls();

    let moved = prison(|p| {
        limited(p);
        p.ip = PrisonIp::parse(&["192.0.2.7"], false).unwrap();
    });
    let mut jail = Jail::build_with(model.clone(), &moved, &identity(), Some(&carry)).unwrap();
    assert_eq!(
        model.calls(),
        strings(&[
            "adopt(10)",
            // The live "www" is the one being retired: the next generation name.
            "jail_get(name=www)",
            "jail_get(name=www_1)",
            "rctl_remove_rule(jail:www_1)",
            "jail_set(CREATE, name=www_1)",
            "reaper(jail 2, www_1) = 11",
            "cpuset_setaffinity(jail 2, 0,1)",
            "rctl_remove_rule(jail:www_1:memoryuse:devctl)",
            "rctl_add_rule(jail:www_1:memoryuse:devctl=419430400)",
            "rctl_add_rule(jail:www_1:memoryuse:deny=536870912)",
            "rctl_add_rule(jail:www_1:maxproc:deny=64)",
            // Retiring the old jail: its reaper's pipe closed, never jail_remove.
            "close(10)",
        ])
    );
    assert_eq!(
        model.params(2).get("ip4.addr"),
        Some(&Some("192.0.2.7".to_owned()))
    );
    let notes = jail.monitor();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("not reused (PrisonIP changed)"),
        "{notes:?}"
    );
    assert!(jail.monitor().is_empty(), "notes are handed out once");
    // The old child still serves in the old jail, which persists no more.
    assert_eq!(model.jail_of(old_child), Some(1));
    let new_child = child_attaches(&model, &jail);
    assert_eq!(model.jail_of(new_child), Some(2));
    model.calls();

    // The old reaper: EOF (the parent closed its end, every child its copy), then the old
    // jail dies with its last child and its rules go; the new jail's stay.
    model.run_reaper(10);
    assert_eq!(
        model.calls(),
        strings(&[
            "nopersist(1)",
            "jail_get(jid=1)",
            "sleep(1)",
            "jail_get(jid=1)",
            "jail_get(name=www)",
            "rctl_remove_rule(jail:www)",
        ])
    );
    assert_eq!(model.live_jails(), [(2, "www_1".to_owned())]);
    assert!(model.rules().iter().all(|r| r.starts_with("jail:www_1:")));
    assert_eq!(model.rules().len(), 3);

    // httpd stops: persist cleared now; the jail still has a child, so its rules stay until
    // the reaper sees it gone.
    assert_eq!(jail.teardown(), Vec::<String>::new());
    assert_eq!(
        model.calls(),
        strings(&["adopt(11)", "nopersist(2)", "jail_get(jid=2)", "close(11)"])
    );
    model.exit(MASTER);
    model.run_reaper(11);
    assert_eq!(
        model.calls(),
        strings(&[
            // Already cleared by teardown: ENOENT would be fine too; here it is still alive.
            "nopersist(2)",
            "jail_get(jid=2)",
            "sleep(1)",
            "jail_get(jid=2)",
            "jail_get(name=www_1)",
            "rctl_remove_rule(jail:www_1)",
        ])
    );
    assert_eq!(model.live_jails(), []);
    assert_eq!(model.rules(), Vec::<String>::new());
}

#[test]
fn a_child_that_keeps_its_copy_of_the_pipe_holds_the_reaper_until_the_parent_exits() {
    let model = Model::new();
    let jail = Jail::build_with(model.clone(), &prison(|_| {}), &identity(), None).unwrap();
    let attached = child_attaches(&model, &jail);
    // A helper forked without exec (not through attach) keeps the write end.
    let helper = model.fork_child();
    assert_eq!(jail.teardown(), Vec::<String>::new());
    assert_eq!(
        model.pending(10, false),
        None,
        "the helper's copy keeps the pipe open"
    );
    // NOTE_EXIT on the parent wakes the reaper anyway.
    model.exit(MASTER);
    assert_eq!(model.pending(10, false), Some(Wake::MasterExited));
    model.exit(helper);
    assert_eq!(model.pending(10, false), Some(Wake::Eof));
    model.run_reaper(10);
    assert_eq!(model.jail_of(attached), Some(1));
    assert_eq!(model.live_jails(), []);
}

#[test]
fn the_reaper_logs_each_crossing_of_the_report_threshold_once() {
    let model = Model::new();
    let jail = Jail::build_with(model.clone(), &prison(limited), &identity(), None).unwrap();
    let _pipe = jail.release();
    model.state().memoryuse = 500 << 20;
    model.state().ticks = 2;
    model.exit(MASTER);
    model.run_reaper(10);
    let log = model.state().reaper_log.clone();
    // Two ticks over the threshold: one line, not two.
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0]
            .starts_with("mod_prison reaper (jail www, jid 1): memory use 524288000 bytes crossed"),
        "{log:?}"
    );
}

#[test]
fn a_foreign_jail_of_the_prison_s_name_is_left_alone_and_noted() {
    let model = Model::new();
    // Somebody's own jail "www", with a rule of its own.
    let foreign = [
        Param {
            name: "name",
            value: Some("www".to_owned()),
        },
        Param {
            name: "path",
            value: Some("/elsewhere".to_owned()),
        },
        Param {
            name: "persist",
            value: None,
        },
    ];
    model.set_params(&foreign, SetMode::Create).unwrap();
    model.rctl_add("jail:www:maxproc:deny=5").unwrap();
    model.calls();
    let mut jail = Jail::build_with(model.clone(), &prison(|_| {}), &identity(), None).unwrap();
    let calls = model.calls();
    assert_eq!(
        calls[..4],
        strings(&[
            "jail_get(name=www)",
            "jail_get(name=www_1)",
            "rctl_remove_rule(jail:www_1)",
            "jail_set(CREATE, name=www_1)",
        ])
    );
    assert_eq!(model.rules(), strings(&["jail:www:maxproc:deny=5"]));
    let notes = jail.monitor();
    assert!(notes[0].contains("a jail named www (jid 1) exists and was not made by this httpd"));
    assert_eq!(jail.teardown(), Vec::<String>::new());
    model.exit(MASTER);
    model.run_reaper(10);
    // The foreign jail and its rule are untouched.
    assert_eq!(model.live_jails(), [(1, "www".to_owned())]);
    assert_eq!(model.rules(), strings(&["jail:www:maxproc:deny=5"]));
}

#[test]
fn a_failed_build_leaves_no_jail() {
    let model = Model::new();
    model.state().racct = Racct::Disabled;
    let err = Jail::build_with(model.clone(), &prison(limited), &identity(), None).unwrap_err();
    assert!(matches!(err, Error::Rctl { .. }), "{err:?}");
    assert!(err.to_string().contains("kern.racct.enable=1"), "{err}");
    // The new jail's reaper pipe was dropped with the error: the reaper clears persist and
    // the jail, which never had a process, dies at once.
    assert_eq!(model.live_jails(), [(1, "www".to_owned())]);
    model.run_reaper(10);
    assert_eq!(model.live_jails(), []);

    // Negative control: the same prison without limits builds.
    let model = Model::new();
    model.state().racct = Racct::Disabled;
    assert!(Jail::build_with(model, &prison(|_| {}), &identity(), None).is_ok());
}

#[test]
fn a_carry_not_made_by_this_process_is_not_adopted() {
    let model = Model::new();
    let jail = Jail::build_with(model.clone(), &prison(|_| {}), &identity(), None).unwrap();
    let carry = jail.release().unwrap().replace("master=100", "master=4242");
    let notes = Jail::<Model>::retire_with(&model, &carry);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("was made by pid 4242, not this httpd (pid 100)"),
        "{notes:?}"
    );
    // Nothing was closed: the jail keeps its reaper until httpd exits.
    assert_eq!(model.pending(10, false), None);
    let notes = Jail::<Model>::retire_with(&model, "garbage");
    assert!(
        notes[0].contains("ignoring the previous generation's record"),
        "{notes:?}"
    );
    // Positive control: this process's own carry is adopted and retired.
    let own = carry.replace("master=4242", "master=100");
    assert_eq!(
        Jail::<Model>::retire_with(&model, &own),
        Vec::<String>::new()
    );
    assert_eq!(model.pending(10, false), Some(Wake::Eof));
}

#[test]
fn a_non_root_parent_builds_nothing() {
    let model = Model::new();
    model.state().proc().euid = 1000;
    let err = Jail::build_with(model.clone(), &prison(|_| {}), &identity(), None).unwrap_err();
    assert!(matches!(err, Error::NotRoot { .. }), "{err:?}");
    assert_eq!(model.calls(), Vec::<String>::new());
}
