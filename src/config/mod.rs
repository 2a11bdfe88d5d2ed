//! Configuration: what the admin wrote, parsed and validated at config time into plain values.
//!
//! Nothing here makes a syscall that changes anything; the only host facts read are
//! `stat` of PrisonDir and the list of online CPUs, both passed in or done at parse time so
//! that `apachectl -t` reports every mistake with its line.

mod bind;
mod cpu;
mod dir;
mod ip;
mod memory;
mod name;
mod processes;
mod security;
mod tmp;

use std::path::PathBuf;

use thiserror::Error;

pub use bind::{Bind, BindError};
pub use cpu::{CpuListError, CpuSet, MAX_CPU_ID};
pub use dir::{check_facts, check_prison_dir, DirError, DirFacts};
pub use ip::{IpError, PrisonIp};
pub use memory::{parse_size, MemoryError, MemoryLimits};
pub use name::{NameError, PrisonName, MAX_NAME_LEN};
pub use processes::{parse_processes, ProcessesError, MAX_PROCESSES};
pub use security::{Security, SecurityError};
pub use tmp::{Tmp, TmpError, DEFAULT_TMP_SIZE, MIN_TMP_SIZE};

/// Whether this build is PARANOID (the cargo feature, on by default).
pub const PARANOID: bool = cfg!(feature = "paranoid");

/// A directive the admin got wrong. `Display` is the text httpd shows after
/// "Syntax error on line N of FILE:".
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("PrisonDir: {0}")]
    Dir(#[from] DirError),
    #[error("PrisonIP: {0}")]
    Ip(#[from] IpError),
    #[error("PrisonSecurity: {0}")]
    Security(#[from] SecurityError),
    #[error("PrisonCPU: {0}")]
    Cpu(#[from] CpuListError),
    #[error("PrisonMemory: {0}")]
    Memory(#[from] MemoryError),
    #[error("PrisonName: {0}")]
    Name(#[from] NameError),
    #[error("PrisonProcesses: {0}")]
    Processes(#[from] ProcessesError),
    #[error("PrisonBind: {0}")]
    Bind(#[from] BindError),
    #[error("PrisonTmp: {0}")]
    Tmp(#[from] TmpError),
    #[error("{0}: given twice; each Prison directive may appear once")]
    Duplicate(&'static str),
    #[error("{0} is set but PrisonDir is not; a prison is declared by its PrisonDir")]
    NoPrisonDir(&'static str),
    #[error("PrisonName: not set, and the ServerName {server_name:?} does not give a usable default ({reason}); set PrisonName")]
    NoDefaultName {
        server_name: String,
        reason: NameError,
    },
    #[error("Mutex {0:?}: SysV semaphores do not work across the prison's IPC namespace; use Mutex pthread, fcntl or flock with PrisonDir")]
    SysvMutex(String),
    #[error("PrisonDir cannot be combined with ChrootDir {0:?}: the prison already is the child's root; remove ChrootDir")]
    ChrootDir(String),
    #[error("PrisonSecurity {security} cannot work with {feature}: it needs setuid-root or root children, and the prison's children have no_new_privs and no capabilities; remove it or use PrisonSecurity None")]
    PrivilegedChildren { security: Security, feature: String },
}

/// The directives as written, collected while httpd reads its configuration.
/// Each setter is one directive; duplicates are refused.
#[derive(Debug, Default, Clone)]
pub struct Directives {
    pub dir: Option<PathBuf>,
    pub ip: Option<PrisonIp>,
    pub security: Option<Security>,
    pub cpus: Option<CpuSet>,
    pub memory: Option<MemoryLimits>,
    pub name: Option<PrisonName>,
    pub binds: Vec<Bind>,
    /// `PrisonProcesses`: `Some(None)` is an explicit 0 (no limit).
    pub processes: Option<Option<u64>>,
    pub tmp: Option<Tmp>,
    /// Where each directive was written.
    pub origins: Origins,
}

/// Where each directive was written (`line 12 of /etc/apache2/apache2.conf`), in the order
/// read, so that a problem found after parsing (the dry run of `apachectl -t`) names its line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(Vec<(String, String)>);

impl Origins {
    /// Records that `directive` (as httpd names it) was read at `location`.
    pub fn record(&mut self, directive: &str, location: String) {
        self.0.push((directive.to_owned(), location));
    }

    /// Where the `n`th (from 0) accepted `directive` was written, if known.
    pub fn nth(&self, directive: &str, n: usize) -> Option<&str> {
        self.0
            .iter()
            .filter(|(d, _)| d.eq_ignore_ascii_case(directive))
            .nth(n)
            .map(|(_, location)| location.as_str())
    }
}

fn set_once<T>(slot: &mut Option<T>, directive: &'static str, value: T) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(ConfigError::Duplicate(directive));
    }
    *slot = Some(value);
    Ok(())
}

impl Directives {
    pub fn prison_dir(&mut self, arg: &str) -> Result<(), ConfigError> {
        let dir = check_prison_dir(arg, PARANOID)?;
        set_once(&mut self.dir, "PrisonDir", dir)
    }

    pub fn prison_ip(&mut self, args: &[&str]) -> Result<(), ConfigError> {
        let ip = PrisonIp::parse(args, PARANOID)?;
        set_once(&mut self.ip, "PrisonIP", ip)
    }

    pub fn prison_security(&mut self, arg: &str) -> Result<(), ConfigError> {
        let security = arg.parse::<Security>()?;
        set_once(&mut self.security, "PrisonSecurity", security)
    }

    /// `online` is the set of CPUs this machine has.
    pub fn prison_cpu(&mut self, arg: &str, online: &CpuSet) -> Result<(), ConfigError> {
        let cpus = CpuSet::parse(arg)?;
        cpus.check_within(online)?;
        set_once(&mut self.cpus, "PrisonCPU", cpus)
    }

    pub fn prison_memory(&mut self, report: &str, deny: &str) -> Result<(), ConfigError> {
        let memory = MemoryLimits::parse(report, deny)?;
        set_once(&mut self.memory, "PrisonMemory", memory)
    }

    pub fn prison_processes(&mut self, arg: &str) -> Result<(), ConfigError> {
        let processes = parse_processes(arg)?;
        set_once(&mut self.processes, "PrisonProcesses", processes)
    }

    pub fn prison_name(&mut self, arg: &str) -> Result<(), ConfigError> {
        let name = PrisonName::parse(arg)?;
        set_once(&mut self.name, "PrisonName", name)
    }

    pub fn prison_tmp(&mut self, arg: &str) -> Result<(), ConfigError> {
        let tmp = Tmp::parse(arg)?;
        set_once(&mut self.tmp, "PrisonTmp", tmp)
    }

    /// Repeatable; two binds onto the same path inside are refused.
    pub fn prison_bind(&mut self, args: &[&str]) -> Result<(), ConfigError> {
        let bind = Bind::parse(args, |p| p.symlink_metadata().is_ok())?;
        if self.binds.iter().any(|b| b.inside == bind.inside) {
            return Err(BindError::Duplicate(bind.inside).into());
        }
        self.binds.push(bind);
        Ok(())
    }

    /// Turns the directives into the prison to build, once the whole configuration is read.
    /// `Ok(None)`: no PrisonDir, the module is loaded but jails nothing.
    pub fn finish(&self, host: &HostConfig) -> Result<Option<Prison>, ConfigError> {
        let Some(dir) = self.dir.clone() else {
            return match self.first_set_directive() {
                Some(directive) => Err(ConfigError::NoPrisonDir(directive)),
                None => Ok(None),
            };
        };
        if let Some(chroot) = &host.chroot_dir {
            return Err(ConfigError::ChrootDir(chroot.clone()));
        }
        if let Some(mutex) = host
            .mutexes
            .iter()
            .find(|m| m.to_ascii_lowercase().contains("sysvsem"))
        {
            return Err(ConfigError::SysvMutex(mutex.clone()));
        }
        let name = match &self.name {
            Some(name) => name.clone(),
            None => PrisonName::from_server_name(&host.server_name).map_err(|reason| {
                ConfigError::NoDefaultName {
                    server_name: host.server_name.clone(),
                    reason,
                }
            })?,
        };
        let security = self.security.unwrap_or(Security::DEFAULT);
        if let Some(feature) = host.privileged_children.first() {
            if security != Security::None {
                return Err(ConfigError::PrivilegedChildren {
                    security,
                    feature: feature.clone(),
                });
            }
        }
        Ok(Some(Prison {
            name,
            dir,
            ip: self.ip.unwrap_or_default(),
            security,
            cpus: self.cpus.clone(),
            memory: self.memory.unwrap_or_default(),
            binds: self.binds.clone(),
            processes: self.processes.flatten(),
            runtime_dir: host.runtime_dir.clone(),
            tmp: self.tmp.unwrap_or_default(),
            origins: self.origins.clone(),
        }))
    }

    fn first_set_directive(&self) -> Option<&'static str> {
        [
            (self.ip.is_some(), "PrisonIP"),
            (self.security.is_some(), "PrisonSecurity"),
            (self.cpus.is_some(), "PrisonCPU"),
            (self.memory.is_some(), "PrisonMemory"),
            (self.processes.is_some(), "PrisonProcesses"),
            (self.name.is_some(), "PrisonName"),
            (!self.binds.is_empty(), "PrisonBind"),
            (self.tmp.is_some(), "PrisonTmp"),
        ]
        .into_iter()
        .find_map(|(set, directive)| set.then_some(directive))
    }
}

/// What the rest of httpd's configuration says that the prison depends on.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The main server's ServerName (httpd fills in the host name when it is unset).
    pub server_name: String,
    /// mod_unixd's ChrootDir, if set.
    pub chroot_dir: Option<String>,
    /// The arguments of every `Mutex` directive.
    pub mutexes: Vec<String>,
    /// httpd's DefaultRuntimeDir (where mod_cgid's socket lives by default), if it exists.
    pub runtime_dir: Option<PathBuf>,
    /// Features that need setuid-root helpers or root children (suEXEC, mpm-itk, mod_ruid2),
    /// as the admin would recognise them ("mod_suexec (loaded)").
    pub privileged_children: Vec<String>,
}

/// The validated prison: every field resolved, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prison {
    pub name: PrisonName,
    pub dir: PathBuf,
    pub ip: PrisonIp,
    pub security: Security,
    pub cpus: Option<CpuSet>,
    pub memory: MemoryLimits,
    /// PrisonBind mounts, in the order written.
    pub binds: Vec<Bind>,
    /// `PrisonProcesses`: the most tasks (processes + threads) in the prison; `None`, no limit.
    pub processes: Option<u64>,
    /// httpd's runtime directory, shown read-only at the same path inside so children reach
    /// mod_cgid's socket.
    pub runtime_dir: Option<PathBuf>,
    /// PrisonTmp.
    pub tmp: Tmp,
    /// Where each directive was written, for errors found after parsing.
    pub origins: Origins,
}

impl std::fmt::Display for Prison {
    /// One line for the error log: what the prison is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prison {} at {}, security {}",
            self.name,
            self.dir.display(),
            self.security
        )?;
        match (self.ip.v4, self.ip.v6) {
            (None, None) => write!(f, ", no network")?,
            (v4, v6) => {
                for addr in v4
                    .map(|a| a.to_string())
                    .into_iter()
                    .chain(v6.map(|a| a.to_string()))
                {
                    write!(f, ", ip {addr}")?;
                }
            }
        }
        if let Some(cpus) = &self.cpus {
            write!(f, ", cpus {cpus}")?;
        }
        let size = |n: Option<u64>| n.map_or("none".to_owned(), |n| n.to_string());
        if self.memory != MemoryLimits::default() {
            write!(
                f,
                ", memory report {} deny {}",
                size(self.memory.report),
                size(self.memory.deny)
            )?;
        }
        if let Some(n) = self.processes {
            write!(f, ", processes {n}")?;
        }
        Ok(())
    }
}
