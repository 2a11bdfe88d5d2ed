//! The FreeBSD jail as data: its parameters, its rctl rules and its cpuset mask, computed once
//! in the parent from the validated [`Prison`]. Pure, and compiled on every platform so that the
//! tests run on Linux; `sys.rs` only hands these values to the kernel.
//!
//! "API §n" below is a section of `../shared/research/freebsd-api.md`, which quotes the kernel,
//! libjail and rctl(8) sources each fact comes from.

use std::ffi::c_ulong;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use thiserror::Error;

use crate::config::{CpuSet, MemoryLimits, Prison, PrisonIp, PrisonName, Security};

/// `MAXHOSTNAMELEN` (256) including the NUL: the longest jail name and hostname (API §1.3).
pub const MAX_JAIL_NAME_LEN: usize = 255;

/// How many names a prison may cycle through when the live jail cannot be reused
/// (`www`, `www_1`, ... `www_15`): at most this many generations of old children at once.
pub const MAX_GENERATIONS: u32 = 16;

/// Why the prison cannot be expressed as a FreeBSD jail.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("jail name {0:?}: {1}")]
    BadName(String, &'static str),
    #[error("PrisonIP {0} is link-local: the jail's address list has no scope, so nothing in the jail could bind it; use a global or ULA address")]
    LinkLocal(Ipv6Addr),
    #[error("PrisonDir {0:?} is not valid UTF-8 without NUL bytes")]
    BadPath(String),
    #[error("PrisonDir is longer than MAXPATHLEN (1024 bytes)")]
    PathTooLong,
    #[error("PrisonBind {0:?}: binds are not done on FreeBSD; mount it yourself (mount_nullfs {0} PrisonDir{1}) and remove PrisonBind")]
    Bind(String, String),
    #[error("PrisonTmp {0}: a private /tmp is not done on FreeBSD; mount a tmpfs at PrisonDir/tmp yourself (mount -t tmpfs -o size={0} tmpfs PrisonDir/tmp) and remove PrisonTmp")]
    Tmp(u64),
}

/// One jail parameter as libjail's `jailparam_import` takes it: the value's string form, or
/// `None` for a boolean given by its name alone (`persist`, `allow.nomount`; API §1.1: the
/// value of a boolean is ignored, only the name counts, so "off" is the `no` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub value: Option<String>,
}

impl Param {
    fn set(name: &'static str, value: impl Into<String>) -> Self {
        Self {
            name,
            value: Some(value.into()),
        }
    }

    fn flag(name: &'static str) -> Self {
        Self { name, value: None }
    }
}

impl fmt::Display for Param {
    /// jail(8)'s form, for error messages: `securelevel=3`, `persist`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// A jail name: `[A-Za-z0-9_-]`, at most 255 bytes, not all digits. No `.` (a dot makes the
/// jail a child of another one) and nothing rctl splits on (`:`, `=`, `/`, `,`), since the same
/// string is the rctl subject id (API §6 item 6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JailName(String);

impl JailName {
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let bad = |why| Err(PlanError::BadName(text.to_owned(), why));
        if text.is_empty() {
            return bad("empty");
        }
        if text.len() > MAX_JAIL_NAME_LEN {
            return bad("longer than 255 bytes (MAXHOSTNAMELEN)");
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad("only letters, digits, '_' and '-' are allowed ('.' would make it a child jail, ':' '=' '/' ',' would break its rctl rules)");
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return bad("all digits, which the kernel reads as a jail id");
        }
        Ok(Self(text.to_owned()))
    }

    /// The jail name of generation `n` of a prison: the PrisonName itself first, then
    /// `NAME_1`, `NAME_2`... for a jail that had to be created beside a live one.
    pub fn generation(base: &PrisonName, n: u32) -> Result<Self, PlanError> {
        match n {
            0 => Self::parse(base.as_str()),
            n => Self::parse(&format!("{base}_{n}")),
        }
    }

    /// Every name the prison may use, in order of preference.
    pub fn candidates(base: &PrisonName) -> Result<Vec<Self>, PlanError> {
        (0..MAX_GENERATIONS)
            .map(|n| Self::generation(base, n))
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything about the jail that follows from the configuration alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPlan {
    /// PrisonDir, canonical (config resolved it), as the kernel stores `path`.
    pub path: String,
    /// `host.hostname` inside the jail: the PrisonName, whatever the jail's generation name.
    pub hostname: String,
    pub ip: PrisonIp,
    pub security: Security,
    pub cpus: Option<CpuSet>,
    pub memory: MemoryLimits,
    pub processes: Option<u64>,
    /// The name every generation's jail name is derived from.
    pub base: PrisonName,
}

impl JailPlan {
    pub fn new(prison: &Prison) -> Result<Self, PlanError> {
        if let Some(bind) = prison.binds.first() {
            // PrisonBind is a Linux bind mount; here it would need nullfs mounts we do not
            // manage (and enforce_statfs=2 forbids inside). Refuse rather than ignore it.
            return Err(PlanError::Bind(
                bind.host.display().to_string(),
                bind.inside.display().to_string(),
            ));
        }
        if let crate::config::Tmp::Size(bytes) = prison.tmp {
            // Likewise a tmpfs the jail would have to be allowed to mount.
            return Err(PlanError::Tmp(bytes));
        }
        let path = path_string(&prison.dir)?;
        if let Some(v6) = prison.ip.v6 {
            // API §6 item 5: ip6.addr has no scope id, so a link-local address never matches.
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                return Err(PlanError::LinkLocal(v6));
            }
        }
        // Validates the base name as a jail name once, so every generation name is valid too.
        JailName::generation(&prison.name, 0)?;
        Ok(Self {
            path,
            hostname: prison.name.to_string(),
            ip: prison.ip,
            security: prison.security,
            cpus: prison.cpus.clone(),
            memory: prison.memory,
            processes: prison.processes,
            base: prison.name.clone(),
        })
    }

    /// The parameters of `JAIL_CREATE`. `persist` because no process is attached yet (API §5:
    /// "new jail must persist or attach"); the reaper clears it when httpd goes.
    pub fn create_params(&self, name: &JailName) -> Vec<Param> {
        let mut params = vec![
            Param::set("name", name.as_str()),
            Param::set("path", self.path.clone()),
        ];
        params.extend(ip_params(&self.ip));
        params.extend(self.changeable_params());
        params
    }

    /// The parameters of `JAIL_UPDATE` on a reused jail: only those the kernel lets change
    /// (API §6 item 7: `path` or the `ip4`/`ip6` modes with any UPDATE bit are EINVAL). The
    /// jail is keyed by its jid, which the caller adds.
    pub fn update_params(&self) -> Vec<Param> {
        self.changeable_params()
    }

    fn changeable_params(&self) -> Vec<Param> {
        let mut params = vec![
            Param::set("host.hostname", self.hostname.clone()),
            Param::flag("persist"),
            // No jails inside the prison; only the root mount visible. Also the kernel's
            // defaults, sent so a reused jail cannot keep other values.
            Param::set("children.max", "0"),
            Param::set("enforce_statfs", "2"),
        ];
        params.extend(security_params(self.security));
        params
    }

    /// The rctl rules this plan needs on jail `name`.
    pub fn rctl_rules(&self, name: &JailName) -> Vec<RctlRule> {
        rctl_rules(name, self.memory, self.processes)
    }
}

fn path_string(dir: &Path) -> Result<String, PlanError> {
    let text = dir
        .to_str()
        .filter(|t| !t.contains('\0'))
        .ok_or_else(|| PlanError::BadPath(dir.display().to_string()))?;
    // MAXPATHLEN including the NUL (API §1.3).
    if text.len() >= 1024 {
        return Err(PlanError::PathTooLong);
    }
    Ok(text.to_owned())
}

/// The jail's network (API §2 and §6 items 3-4). A new jail without `ipN`/`ipN.addr` has that
/// family *disabled*, so PrisonIP unset means both `inherit` (the host's addresses, as
/// children can already use the inherited listeners); with PrisonIP, the address list and the
/// other family disabled. A wildcard (accepted without PARANOID) is not a valid list entry
/// (EINVAL), and "any address" is what `inherit` means.
pub fn ip_params(ip: &PrisonIp) -> Vec<Param> {
    let v4 = match ip.v4 {
        Some(addr) if addr == Ipv4Addr::UNSPECIFIED => Param::set("ip4", "inherit"),
        Some(addr) => Param::set("ip4.addr", addr.to_string()),
        None if ip.is_set() => Param::set("ip4", "disable"),
        None => Param::set("ip4", "inherit"),
    };
    let v6 = match ip.v6 {
        Some(addr) if addr == Ipv6Addr::UNSPECIFIED => Param::set("ip6", "inherit"),
        Some(addr) => Param::set("ip6.addr", addr.to_string()),
        None if ip.is_set() => Param::set("ip6", "disable"),
        None => Param::set("ip6", "inherit"),
    };
    vec![v4, v6]
}

/// The `allow.*`, `securelevel` and SysV parameters of each PrisonSecurity level (API §2.1).
/// `allow.suser` is never cleared: with `allow.nosuser` the jailed root has no privilege and
/// the switch to the httpd User after the attach fails (API §6 item 11). The `sysv*`
/// parameters are sent explicitly rather than the deprecated `allow.sysvipc`, which would share
/// the host's namespace.
pub fn security_params(security: Security) -> Vec<Param> {
    const SYSV: [&str; 3] = ["sysvmsg", "sysvsem", "sysvshm"];
    // ALL and IPC: the original's list plus the rest of the kernel's default-on permissions.
    const LOCKED: [&str; 10] = [
        "allow.noset_hostname",
        "allow.noraw_sockets",
        "allow.nochflags",
        "allow.nomount",
        "allow.noquotas",
        "allow.nosocket_af",
        "allow.nomlock",
        "allow.noread_msgbuf",
        // Children never bind: httpd's parent opened the listeners before the attach.
        "allow.noreserved_ports",
        "allow.nounprivileged_proc_debug",
    ];
    let sysv = |mode: &str| SYSV.map(|name| Param::set(name, mode));
    match security {
        // Kernel defaults, plus a private SysV namespace as the Linux prison's IPC namespace
        // gives (API §2.1 row NONE: "to give PHP working sem_*/shm_* here too").
        Security::None => sysv("new").to_vec(),
        Security::All | Security::Ipc => {
            let mut params = vec![Param::set("securelevel", "3")];
            params.extend(LOCKED.map(Param::flag));
            let mode = if security == Security::Ipc {
                "new"
            } else {
                "disable"
            };
            params.extend(sysv(mode));
            params
        }
    }
}

/// How a managed rctl rule replaces an older one on the same filter (API §4 "Adding and
/// removing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// `rctl_add_rule` of a deny rule atomically replaces every deny rule differing only in
    /// amount: add it, never a moment without a limit.
    ByAdding,
    /// Any other action stacks beside rules with another amount: remove the filter first.
    RemoveFirst,
}

/// One rule mod_prison manages on the jail: the filter that matches it whatever its amount,
/// and the rule to add, `None` when the configuration has no such limit (the filter is then
/// removed, so a limit dropped from the configuration goes at a graceful restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RctlRule {
    pub filter: String,
    pub rule: Option<String>,
    pub replace: Replace,
}

/// `PrisonMemory report deny` -> `memoryuse:devctl` and `memoryuse:deny`; `PrisonProcesses n`
/// -> `maxproc:deny`. Amounts are plain bytes or counts: the kernel takes digits only, `512M`
/// is expanded by rctl(8), not by the syscall (API §4 "Grammar"). 0 (`None`) means no rule.
pub fn rctl_rules(name: &JailName, memory: MemoryLimits, processes: Option<u64>) -> Vec<RctlRule> {
    let rule = |resource: &str, action: &str, amount: Option<u64>, replace| {
        let filter = format!("jail:{name}:{resource}:{action}");
        RctlRule {
            rule: amount.map(|n| format!("{filter}={n}")),
            filter,
            replace,
        }
    };
    vec![
        rule("memoryuse", "devctl", memory.report, Replace::RemoveFirst),
        rule("memoryuse", "deny", memory.deny, Replace::ByAdding),
        rule("maxproc", "deny", processes, Replace::ByAdding),
    ]
}

/// The filter matching every rule of jail `name`: rules are keyed by name and outlive the
/// jail (API §4), so this is removed when a jail is created and when it goes.
pub fn rctl_all_filter(name: &JailName) -> String {
    format!("jail:{name}")
}

/// Reads the `memoryuse` amount from `rctl_get_racct` output (`cputime=0,...,memoryuse=123,...`).
pub fn racct_memoryuse(racct: &str) -> Option<u64> {
    racct
        .trim_end_matches('\0')
        .split(',')
        .find_map(|pair| pair.trim().strip_prefix("memoryuse="))
        .and_then(|n| n.parse().ok())
}

/// One word of a kernel `cpuset_t`: a C `long` (API §3: "a bitset of longs: CPU n is bit
/// n % 64 of word n / 64" on amd64; `long` is pointer-sized on every FreeBSD platform).
pub type MaskWord = c_ulong;

const WORD_BITS: usize = MaskWord::BITS as usize;

/// Why a CPU list does not fit the kernel's cpuset.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MaskError {
    #[error("kern.sched.cpusetsize {0} is not a whole number of words")]
    BadSetSize(usize),
    #[error("PrisonCPU {cpu} is beyond this kernel's cpuset of {bits} CPUs")]
    TooLarge { cpu: u32, bits: usize },
}

/// The jail's CPU mask, `setsize` bytes long (`kern.sched.cpusetsize`, API §3), never the
/// size of a pointer (the original passed `sizeof(mask)` of a `cpuset_t *`).
pub fn cpuset_mask(cpus: &CpuSet, setsize: usize) -> Result<Vec<MaskWord>, MaskError> {
    let word = std::mem::size_of::<MaskWord>();
    if setsize == 0 || setsize % word != 0 {
        return Err(MaskError::BadSetSize(setsize));
    }
    let mut mask = vec![0; setsize / word];
    let bits = setsize * 8;
    for cpu in cpus.iter() {
        let n = cpu as usize;
        if n >= bits {
            return Err(MaskError::TooLarge { cpu, bits });
        }
        mask[n / WORD_BITS] |= 1 << (n % WORD_BITS);
    }
    Ok(mask)
}

/// The mask as the bytes the kernel reads (native byte order).
pub fn mask_bytes(mask: &[MaskWord]) -> Vec<u8> {
    mask.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

/// What the parent remembers of the jail it made for the previous generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub path: String,
    pub ip: PrisonIp,
    pub security: Security,
    /// The jail's CPU mask; `None`, every CPU.
    pub cpus: Option<CpuSet>,
}

impl From<&JailPlan> for Built {
    fn from(plan: &JailPlan) -> Self {
        Self {
            path: plan.path.clone(),
            ip: plan.ip,
            security: plan.security,
            cpus: plan.cpus.clone(),
        }
    }
}

/// Whether a graceful restart may keep the live jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reuse {
    Yes,
    /// A new jail is needed; the reason, for the log.
    No(&'static str),
}

/// Decides from the configuration alone whether the previous generation's jail can serve
/// the new one (the caller also checks the kernel still has it under its name and path).
/// Only parameters that can change on a live jail may differ (API §5 table):
/// - `path` and the `ip4`/`ip6` modes are create-only;
/// - a jail's cpuset can only shrink (API §3 `cpuset_modify`);
/// - the security level is compared whole, so going back to None never leaves ALL's
///   `securelevel=3` behind (the original's reuse kept whatever was set before, and lowering
///   `securelevel` needs the host's level).
pub fn reuse(previous: &Built, plan: &JailPlan) -> Reuse {
    if previous.path != plan.path {
        return Reuse::No("PrisonDir changed");
    }
    if previous.ip != plan.ip {
        return Reuse::No("PrisonIP changed");
    }
    if previous.security != plan.security {
        return Reuse::No("PrisonSecurity changed");
    }
    match (&previous.cpus, &plan.cpus) {
        (_, None) if previous.cpus.is_some() => Reuse::No("PrisonCPU widened to every CPU"),
        (Some(old), Some(new)) if new.iter().any(|c| !old.iter().any(|o| o == c)) => {
            Reuse::No("PrisonCPU adds CPUs, and a jail's cpuset can only shrink")
        }
        _ => Reuse::Yes,
    }
}

/// The create-only parameters of a jail (`path`, the `ip4`/`ip6` addresses, and the
/// PrisonSecurity level compared whole) as a stable text: what the live jail must match for
/// the next generation to reuse it. Written field by field, never `{:?}` of a struct, so a
/// change of layout cannot silently change it; `v1` is bumped if a field's meaning changes.
/// The path comes last and takes the rest of the text, so two plans never render alike.
pub fn fingerprint(built: &Built) -> String {
    let v4 = built.ip.v4.map_or("-".to_owned(), |a| a.to_string());
    let v6 = built.ip.v6.map_or("-".to_owned(), |a| a.to_string());
    let security = match built.security {
        Security::None => "none",
        Security::All => "all",
        Security::Ipc => "ipc",
    };
    format!(
        "v1 ip4={v4} ip6={v6} security={security} path={}",
        built.path
    )
}

/// Reads a [`fingerprint`] back: (addresses, security, path).
fn parse_fingerprint(text: &str) -> Option<(PrisonIp, Security, String)> {
    let rest = text.strip_prefix("v1 ip4=")?;
    let (v4, rest) = rest.split_once(" ip6=")?;
    let (v6, rest) = rest.split_once(" security=")?;
    let (security, path) = rest.split_once(" path=")?;
    let v4 = match v4 {
        "-" => None,
        a => Some(a.parse().ok()?),
    };
    let v6 = match v6 {
        "-" => None,
        a => Some(a.parse().ok()?),
    };
    let security = match security {
        "none" => Security::None,
        "all" => Security::All,
        "ipc" => Security::Ipc,
        _ => return None,
    };
    if path.is_empty() || path.contains('\0') {
        return None;
    }
    Some((PrisonIp { v4, v6 }, security, path.to_owned()))
}

/// Why the previous generation's carry cannot be read. It is then ignored: its descriptor is
/// not trusted, so the old jail stays with its reaper until httpd exits.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CarryError {
    #[error("no field {0:?}")]
    Missing(&'static str),
    #[error("field {0:?} given twice")]
    Duplicate(String),
    #[error("unknown field {0:?}")]
    Unknown(String),
    #[error("field {0:?}: bad value {1:?}")]
    BadValue(&'static str, String),
    #[error("a field without '=': {0:?}")]
    NoEquals(String),
    #[error("bad %-escape in {0:?}")]
    BadEscape(String),
}

/// What one generation hands the next across httpd's reload of the module: plain text kept
/// in the process pool (a Rust value cannot cross the reload, its code is unmapped). The
/// write end of the reaper's pipe stays open in the parent under number `fd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carry {
    pub jid: i32,
    pub fd: i32,
    /// The httpd parent that made the jail and holds `fd`.
    pub master: u32,
    pub name: JailName,
    pub built: Built,
}

impl Carry {
    /// `jid=5;fd=12;master=345;name=www;cpus=0-3;plan=<fingerprint>`, with `%` and `;`
    /// %-escaped in values (`cpus=all` for every CPU).
    pub fn render(&self) -> String {
        let cpus = self
            .built
            .cpus
            .as_ref()
            .map_or("all".to_owned(), |c| c.to_string());
        format!(
            "jid={};fd={};master={};name={};cpus={};plan={}",
            self.jid,
            self.fd,
            self.master,
            self.name,
            escape(&cpus),
            escape(&fingerprint(&self.built))
        )
    }

    /// The inverse of [`Carry::render`]; anything else is an error, never a guess.
    pub fn parse(text: &str) -> Result<Self, CarryError> {
        const KEYS: [&str; 6] = ["jid", "fd", "master", "name", "cpus", "plan"];
        let mut values: [Option<String>; 6] = Default::default();
        for field in text.split(';') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| CarryError::NoEquals(field.to_owned()))?;
            let i = KEYS
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| CarryError::Unknown(key.to_owned()))?;
            if values[i].is_some() {
                return Err(CarryError::Duplicate(key.to_owned()));
            }
            values[i] = Some(unescape(value)?);
        }
        let mut take = |i: usize| values[i].take().ok_or(CarryError::Missing(KEYS[i]));
        let number = |key: &'static str, v: String| -> Result<i64, CarryError> {
            match v.parse::<i64>() {
                Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => Err(CarryError::BadValue(key, v)),
            }
        };
        let bad = |key: &'static str, v: &str| CarryError::BadValue(key, v.to_owned());
        let jid = take(0)?;
        let jid = i32::try_from(number("jid", jid.clone())?)
            .ok()
            .filter(|&j| j > 0)
            .ok_or_else(|| bad("jid", &jid))?;
        let fd = take(1)?;
        // 0-2 are stdio, never the reaper's pipe.
        let fd = i32::try_from(number("fd", fd.clone())?)
            .ok()
            .filter(|&f| f > 2)
            .ok_or_else(|| bad("fd", &fd))?;
        let master = take(2)?;
        let master = u32::try_from(number("master", master.clone())?)
            .ok()
            .filter(|&m| m > 1)
            .ok_or_else(|| bad("master", &master))?;
        let name = take(3)?;
        let name = JailName::parse(&name).map_err(|_| bad("name", &name))?;
        let cpus = match take(4)? {
            all if all == "all" => None,
            list => Some(CpuSet::parse(&list).map_err(|_| bad("cpus", &list))?),
        };
        let plan = take(5)?;
        let (ip, security, path) = parse_fingerprint(&plan).ok_or_else(|| bad("plan", &plan))?;
        Ok(Self {
            jid,
            fd,
            master,
            name,
            built: Built {
                path,
                ip,
                security,
                cpus,
            },
        })
    }
}

fn escape(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace(';', "%3B")
        .replace('\0', "%00")
}

fn unescape(value: &str) -> Result<String, CarryError> {
    let bad = || CarryError::BadEscape(value.to_owned());
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3).ok_or_else(bad)?;
        out.push(match code {
            "25" => '%',
            "3B" => ';',
            "00" => '\0',
            _ => return Err(bad()),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bind, PrisonName};
    use std::path::PathBuf;

    fn prison() -> Prison {
        Prison {
            name: PrisonName::parse("www").unwrap(),
            dir: PathBuf::from("/usr/jails/www"),
            ip: PrisonIp::default(),
            security: Security::All,
            cpus: None,
            memory: MemoryLimits::default(),
            binds: Vec::new(),
            processes: None,
            runtime_dir: None,
            tmp: crate::config::Tmp::Default,
            origins: Default::default(),
        }
    }

    fn plan(edit: impl FnOnce(&mut Prison)) -> JailPlan {
        let mut p = prison();
        edit(&mut p);
        JailPlan::new(&p).unwrap()
    }

    fn shown(params: &[Param]) -> Vec<String> {
        params.iter().map(Param::to_string).collect()
    }

    fn ip(text: &[&str]) -> PrisonIp {
        PrisonIp::parse(text, false).unwrap()
    }

    const ALL_LOCKED: [&str; 11] = [
        "securelevel=3",
        "allow.noset_hostname",
        "allow.noraw_sockets",
        "allow.nochflags",
        "allow.nomount",
        "allow.noquotas",
        "allow.nosocket_af",
        "allow.nomlock",
        "allow.noread_msgbuf",
        "allow.noreserved_ports",
        "allow.nounprivileged_proc_debug",
    ];

    #[test]
    fn security_levels() {
        let none = shown(&security_params(Security::None));
        assert_eq!(none, ["sysvmsg=new", "sysvsem=new", "sysvshm=new"]);
        for (level, sysv) in [(Security::All, "disable"), (Security::Ipc, "new")] {
            let mut want: Vec<String> = ALL_LOCKED.iter().map(|s| s.to_string()).collect();
            want.extend(["sysvmsg", "sysvsem", "sysvshm"].map(|n| format!("{n}={sysv}")));
            assert_eq!(shown(&security_params(level)), want, "{level}");
        }
        // Negative control: None relaxes nothing and locks nothing.
        assert!(!none
            .iter()
            .any(|p| p.starts_with("allow.") || p.starts_with("securelevel")));
    }

    #[test]
    fn the_jailed_root_keeps_the_privilege_to_switch_user() {
        for level in [Security::None, Security::All, Security::Ipc] {
            let p = plan(|p| p.security = level);
            let names: Vec<&str> = p
                .create_params(&JailName::parse("www").unwrap())
                .iter()
                .map(|p| p.name)
                .collect();
            assert!(!names.contains(&"allow.nosuser"), "{level}");
            // Deprecated and shares the host's SysV namespace.
            assert!(!names.iter().any(|n| n.ends_with("sysvipc")), "{level}");
        }
    }

    #[test]
    fn ip_forms() {
        let cases: [(&[&str], [&str; 2]); 7] = [
            (&[], ["ip4=inherit", "ip6=inherit"]),
            (&["192.0.2.7"], ["ip4.addr=192.0.2.7", "ip6=disable"]),
            (&["2001:db8::7"], ["ip4=disable", "ip6.addr=2001:db8::7"]),
            (
                &["192.0.2.7", "2001:db8::7"],
                ["ip4.addr=192.0.2.7", "ip6.addr=2001:db8::7"],
            ),
            // Wildcards (non-PARANOID builds) are EINVAL in an address list: inherit instead.
            (&["0.0.0.0"], ["ip4=inherit", "ip6=disable"]),
            (&["::"], ["ip4=disable", "ip6=inherit"]),
            (&["::", "192.0.2.7"], ["ip4.addr=192.0.2.7", "ip6=inherit"]),
        ];
        for (addrs, want) in cases {
            assert_eq!(shown(&ip_params(&ip(addrs))), want, "{addrs:?}");
        }
    }

    #[test]
    fn create_parameters_for_every_level_and_address_form() {
        let name = JailName::parse("www").unwrap();
        for level in [Security::None, Security::All, Security::Ipc] {
            for addrs in [
                &[][..],
                &["192.0.2.7"],
                &["2001:db8::7"],
                &["192.0.2.7", "2001:db8::7"],
            ] {
                let p = plan(|p| {
                    p.security = level;
                    p.ip = ip(addrs);
                });
                let mut want = vec!["name=www".to_owned(), "path=/usr/jails/www".to_owned()];
                want.extend(shown(&ip_params(&ip(addrs))));
                want.extend(
                    [
                        "host.hostname=www",
                        "persist",
                        "children.max=0",
                        "enforce_statfs=2",
                    ]
                    .map(str::to_owned),
                );
                want.extend(shown(&security_params(level)));
                assert_eq!(shown(&p.create_params(&name)), want, "{level} {addrs:?}");
            }
        }
    }

    #[test]
    fn updates_never_carry_create_only_parameters() {
        let p = plan(|p| p.ip = ip(&["192.0.2.7", "2001:db8::7"]));
        let update = p.update_params();
        for param in &update {
            assert!(
                !["name", "path", "ip4", "ip6", "ip4.addr", "ip6.addr", "vnet"]
                    .contains(&param.name),
                "{param}"
            );
        }
        // Positive control: the create list does carry them.
        let create = p.create_params(&JailName::parse("www").unwrap());
        assert!(create.iter().any(|p| p.name == "path"));
        assert!(update.contains(&Param::flag("persist")));
    }

    #[test]
    fn the_hostname_is_the_prison_name_in_every_generation() {
        let p = plan(|_| {});
        let gen2 = JailName::generation(&p.base, 2).unwrap();
        let params = shown(&p.create_params(&gen2));
        assert!(params.contains(&"name=www_2".to_owned()));
        assert!(params.contains(&"host.hostname=www".to_owned()));
    }

    #[test]
    fn rctl_rules_for_every_form() {
        let name = JailName::parse("www").unwrap();
        let mem = |report, deny| MemoryLimits { report, deny };
        let cases = [
            // PrisonMemory 0 0, no PrisonProcesses (or PrisonProcesses 0): no rule at all.
            (mem(None, None), None, [None, None, None]),
            (
                mem(Some(419_430_400), Some(536_870_912)),
                None,
                [
                    Some("jail:www:memoryuse:devctl=419430400"),
                    Some("jail:www:memoryuse:deny=536870912"),
                    None,
                ],
            ),
            // PrisonMemory 400M 0: report only.
            (
                mem(Some(419_430_400), None),
                None,
                [Some("jail:www:memoryuse:devctl=419430400"), None, None],
            ),
            // PrisonMemory 0 512M: deny only.
            (
                mem(None, Some(536_870_912)),
                None,
                [None, Some("jail:www:memoryuse:deny=536870912"), None],
            ),
            (
                mem(None, None),
                Some(64),
                [None, None, Some("jail:www:maxproc:deny=64")],
            ),
            (
                mem(Some(1), Some(1)),
                Some(1),
                [
                    Some("jail:www:memoryuse:devctl=1"),
                    Some("jail:www:memoryuse:deny=1"),
                    Some("jail:www:maxproc:deny=1"),
                ],
            ),
        ];
        for (memory, processes, want) in cases {
            let rules = rctl_rules(&name, memory, processes);
            let got: Vec<Option<&str>> = rules.iter().map(|r| r.rule.as_deref()).collect();
            assert_eq!(got, want, "{memory:?} {processes:?}");
            let filters: Vec<&str> = rules.iter().map(|r| r.filter.as_str()).collect();
            assert_eq!(
                filters,
                [
                    "jail:www:memoryuse:devctl",
                    "jail:www:memoryuse:deny",
                    "jail:www:maxproc:deny"
                ]
            );
            for r in &rules {
                if let Some(rule) = &r.rule {
                    // Plain digits after '=': the kernel has no suffixes (no "512M").
                    let amount = rule.rsplit_once('=').unwrap().1;
                    assert!(amount.bytes().all(|b| b.is_ascii_digit()), "{rule}");
                    assert!(rule.starts_with(&r.filter));
                }
            }
        }
        let rules = rctl_rules(&name, mem(Some(1), Some(2)), Some(3));
        assert_eq!(rules[0].replace, Replace::RemoveFirst);
        assert_eq!(rules[1].replace, Replace::ByAdding);
        assert_eq!(rules[2].replace, Replace::ByAdding);
        assert_eq!(rctl_all_filter(&name), "jail:www");
    }

    #[test]
    fn racct_output_is_read() {
        let out = "cputime=0,datasize=0,memoryuse=123456,memorylocked=0,maxproc=3\0";
        assert_eq!(racct_memoryuse(out), Some(123_456));
        assert_eq!(racct_memoryuse("memoryuse=7"), Some(7));
        assert_eq!(racct_memoryuse("vmemoryuse=9,maxproc=1"), None);
        assert_eq!(racct_memoryuse(""), None);
    }

    fn bytes(list: &str, setsize: usize) -> Vec<u8> {
        mask_bytes(&cpuset_mask(&CpuSet::parse(list).unwrap(), setsize).unwrap())
    }

    #[test]
    fn cpuset_masks() {
        // (list, the mask's low bytes); the rest is zero. Bit n of byte n/8 on little endian,
        // which is bit n % 64 of long n / 64 as the kernel reads it.
        let cases: [(&str, &[u8]); 4] = [
            ("1", &[0b0000_0010]),
            ("1,2,6", &[0b0100_0110]),
            // The original stored {8,10,10} for this.
            ("8-10", &[0, 0b0000_0111]),
            ("0,2-3", &[0b0000_1101]),
        ];
        for setsize in [32, 128] {
            for (list, low) in cases {
                let got = bytes(list, setsize);
                // The whole kernel set, never sizeof(a pointer) (the original's bug).
                assert_eq!(got.len(), setsize, "{list}");
                if cfg!(target_endian = "little") {
                    assert_eq!(&got[..low.len()], low, "{list}");
                    assert!(got[low.len()..].iter().all(|&b| b == 0), "{list}");
                }
            }
        }
        let words = cpuset_mask(&CpuSet::parse("0,2-3,64,255").unwrap(), 32).unwrap();
        assert_eq!(words.len(), 32 / std::mem::size_of::<MaskWord>());
        let bit = |n: usize| words[n / WORD_BITS] >> (n % WORD_BITS) & 1 == 1;
        assert!(bit(0) && bit(2) && bit(3) && bit(64) && bit(255));
        assert!(!bit(1) && !bit(4) && !bit(63) && !bit(65));
    }

    #[test]
    fn cpuset_mask_bounds() {
        let set = |l| CpuSet::parse(l).unwrap();
        // The last CPU of a 256-CPU set fits, the next does not (the original used `>`).
        assert!(cpuset_mask(&set("255"), 32).is_ok());
        assert_eq!(
            cpuset_mask(&set("256"), 32),
            Err(MaskError::TooLarge {
                cpu: 256,
                bits: 256
            })
        );
        assert!(cpuset_mask(&set("1023"), 128).is_ok());
        assert_eq!(cpuset_mask(&set("1"), 0), Err(MaskError::BadSetSize(0)));
        assert_eq!(cpuset_mask(&set("1"), 12), Err(MaskError::BadSetSize(12)));
    }

    #[test]
    fn jail_names() {
        for good in ["www", "plop_rmdir_fr", "a-b", "x1", "_", "9a"] {
            assert_eq!(JailName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "", "a.b", // a child of jail "a"
            "123", // read as a jid
            "0", "a:b", // rctl subject separator
            "a=b", "a/b", "a,b", "a b", "é",
        ] {
            assert!(JailName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(JailName::parse(&"n".repeat(255)).is_ok());
        assert!(JailName::parse(&"n".repeat(256)).is_err());
    }

    #[test]
    fn generation_names() {
        let base = PrisonName::parse("www").unwrap();
        let names = JailName::candidates(&base).unwrap();
        assert_eq!(names.len(), MAX_GENERATIONS as usize);
        assert_eq!(names[0].as_str(), "www");
        assert_eq!(names[1].as_str(), "www_1");
        assert_eq!(names[15].as_str(), "www_15");
        // A ServerName-derived default (dots mapped to '_') is a valid jail name.
        let derived = PrisonName::from_server_name("plop.rmdir.fr").unwrap();
        assert_eq!(
            JailName::generation(&derived, 0).unwrap().as_str(),
            "plop_rmdir_fr"
        );
        // The longest PrisonName still has room for every suffix.
        let long = PrisonName::parse(&"n".repeat(crate::config::MAX_NAME_LEN)).unwrap();
        assert!(JailName::candidates(&long).is_ok());
    }

    #[test]
    fn refused_configurations() {
        let mut p = prison();
        p.binds.push(Bind {
            host: PathBuf::from("/srv/data"),
            inside: PathBuf::from("/data"),
            writable: false,
        });
        let err = JailPlan::new(&p).unwrap_err();
        assert!(err.to_string().contains("mount_nullfs"), "{err}");

        // PrisonTmp with a size is refused; unset and off mean no private /tmp.
        let mut p = prison();
        p.tmp = crate::config::Tmp::Size(1 << 20);
        assert_eq!(JailPlan::new(&p).unwrap_err(), PlanError::Tmp(1 << 20));
        p.tmp = crate::config::Tmp::Off;
        assert!(JailPlan::new(&p).is_ok());

        let mut p = prison();
        p.ip = ip(&["fe80::1"]);
        assert!(matches!(JailPlan::new(&p), Err(PlanError::LinkLocal(_))));
        // Negative control: a global and a ULA address are fine.
        for ok in ["2001:db8::1", "fd00::1"] {
            let mut p = prison();
            p.ip = ip(&[ok]);
            assert!(JailPlan::new(&p).is_ok(), "{ok}");
        }
    }

    #[test]
    fn reuse_decisions() {
        let base = plan(|p| p.cpus = Some(CpuSet::parse("0-3").unwrap()));
        let built = Built::from(&base);
        assert_eq!(reuse(&built, &base), Reuse::Yes);
        type Edit = Box<dyn Fn(&mut Prison)>;
        let cases: [(Edit, bool); 8] = [
            (Box::new(|_| {}), true),
            (
                Box::new(|p| p.cpus = Some(CpuSet::parse("1,2").unwrap())),
                true,
            ),
            (Box::new(|p| p.memory.deny = Some(1 << 30)), true),
            (Box::new(|p| p.processes = Some(10)), true),
            (
                Box::new(|p| p.cpus = Some(CpuSet::parse("0-4").unwrap())),
                false,
            ),
            (Box::new(|p| p.cpus = None), false),
            (
                Box::new(|p| p.dir = PathBuf::from("/usr/jails/other")),
                false,
            ),
            (Box::new(|p| p.ip = ip(&["192.0.2.7"])), false),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            let mut p = prison();
            p.cpus = Some(CpuSet::parse("0-3").unwrap());
            edit(&mut p);
            let new = JailPlan::new(&p).unwrap();
            assert_eq!(reuse(&built, &new) == Reuse::Yes, want, "case {i}");
        }
        // Going back to None needs a new jail: securelevel=3 would otherwise stay.
        for level in [Security::None, Security::Ipc] {
            let new = plan(|p| {
                p.cpus = Some(CpuSet::parse("0-3").unwrap());
                p.security = level;
            });
            assert_eq!(reuse(&built, &new), Reuse::No("PrisonSecurity changed"));
        }
        // From every CPU, any list is a shrink.
        let all = Built::from(&plan(|_| {}));
        assert_eq!(reuse(&all, &base), Reuse::Yes);
    }

    #[test]
    fn fingerprints_render_every_create_only_parameter() {
        let render = |edit: fn(&mut Prison)| fingerprint(&Built::from(&plan(edit)));
        assert_eq!(
            render(|_| {}),
            "v1 ip4=- ip6=- security=all path=/usr/jails/www"
        );
        assert_eq!(
            render(|p| {
                p.ip = PrisonIp::parse(&["192.0.2.7", "2001:db8::7"], false).unwrap();
                p.security = Security::Ipc;
                p.dir = PathBuf::from("/j/a b;c%d");
            }),
            "v1 ip4=192.0.2.7 ip6=2001:db8::7 security=ipc path=/j/a b;c%d"
        );
        assert_eq!(
            render(|p| p.security = Security::None),
            "v1 ip4=- ip6=- security=none path=/usr/jails/www"
        );
        // Not create-only: the changeable parameters do not change the fingerprint.
        let base = render(|_| {});
        assert_eq!(render(|p| p.memory.deny = Some(1 << 30)), base);
        assert_eq!(render(|p| p.processes = Some(5)), base);
        assert_eq!(render(|p| p.cpus = Some(CpuSet::parse("1").unwrap())), base);
        // Each create-only parameter does.
        assert_ne!(render(|p| p.dir = PathBuf::from("/usr/jails/x")), base);
        assert_ne!(
            render(|p| p.ip = PrisonIp::parse(&["::"], false).unwrap()),
            base
        );
        assert_ne!(render(|p| p.security = Security::Ipc), base);
    }

    fn carry(edit: fn(&mut Prison)) -> Carry {
        Carry {
            jid: 7,
            fd: 12,
            master: 4242,
            name: JailName::parse("www_1").unwrap(),
            built: Built::from(&plan(edit)),
        }
    }

    #[test]
    fn carries_round_trip() {
        let plain = carry(|_| {});
        assert_eq!(
            plain.render(),
            "jid=7;fd=12;master=4242;name=www_1;cpus=all;plan=v1 ip4=- ip6=- security=all \
             path=/usr/jails/www"
        );
        let odd = carry(|p| {
            p.dir = PathBuf::from("/j/x;fd=3;%41=");
            p.cpus = Some(CpuSet::parse("0,2-5").unwrap());
            p.ip = PrisonIp::parse(&["192.0.2.7"], false).unwrap();
            p.security = Security::None;
        });
        let text = odd.render();
        assert!(text.contains("cpus=0,2-5;"), "{text}");
        assert!(text.ends_with("path=/j/x%3Bfd=3%3B%2541="), "{text}");
        for c in [plain, odd] {
            assert_eq!(Carry::parse(&c.render()), Ok(c.clone()));
        }
        // Field order does not matter.
        let shuffled = "plan=v1 ip4=- ip6=- security=all path=/usr/jails/www;cpus=all;\
                        name=www_1;master=4242;fd=12;jid=7";
        assert_eq!(Carry::parse(shuffled), Ok(carry(|_| {})));
    }

    #[test]
    fn malformed_carries_are_refused() {
        let good = carry(|_| {}).render();
        let with = |key: &str, value: &str| {
            good.split(';')
                .map(|f| match f.split_once('=') {
                    Some((k, _)) if k == key => format!("{k}={value}"),
                    _ => f.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(";")
        };
        let without = |key: &str| {
            good.split(';')
                .filter(|f| !f.starts_with(&format!("{key}=")))
                .collect::<Vec<_>>()
                .join(";")
        };
        let cases: Vec<(String, CarryError)> = vec![
            (String::new(), CarryError::NoEquals(String::new())),
            ("garbage".into(), CarryError::NoEquals("garbage".into())),
            (without("fd"), CarryError::Missing("fd")),
            (without("plan"), CarryError::Missing("plan")),
            (format!("{good};jid=8"), CarryError::Duplicate("jid".into())),
            (format!("{good};"), CarryError::NoEquals(String::new())),
            (format!("{good};x=1"), CarryError::Unknown("x".into())),
            (with("jid", "0"), CarryError::BadValue("jid", "0".into())),
            (with("jid", "-3"), CarryError::BadValue("jid", "-3".into())),
            (with("jid", "+3"), CarryError::BadValue("jid", "+3".into())),
            (
                with("jid", "99999999999"),
                CarryError::BadValue("jid", "99999999999".into()),
            ),
            (with("fd", "2"), CarryError::BadValue("fd", "2".into())),
            (with("fd", ""), CarryError::BadValue("fd", String::new())),
            (
                with("master", "1"),
                CarryError::BadValue("master", "1".into()),
            ),
            (
                with("name", "a.b"),
                CarryError::BadValue("name", "a.b".into()),
            ),
            (
                with("name", "12"),
                CarryError::BadValue("name", "12".into()),
            ),
            (
                with("cpus", "1-"),
                CarryError::BadValue("cpus", "1-".into()),
            ),
            (
                with("plan", "v2 x"),
                CarryError::BadValue("plan", "v2 x".into()),
            ),
            (
                with("plan", "v1 ip4=1.2.3 ip6=- security=all path=/x"),
                CarryError::BadValue("plan", "v1 ip4=1.2.3 ip6=- security=all path=/x".into()),
            ),
            (
                with("plan", "v1 ip4=- ip6=- security=most path=/x"),
                CarryError::BadValue("plan", "v1 ip4=- ip6=- security=most path=/x".into()),
            ),
            (
                with("plan", "v1 ip4=- ip6=- security=all path="),
                CarryError::BadValue("plan", "v1 ip4=- ip6=- security=all path=".into()),
            ),
            (with("name", "w%4"), CarryError::BadEscape("w%4".into())),
            (with("name", "w%41"), CarryError::BadEscape("w%41".into())),
        ];
        for (text, want) in cases {
            assert_eq!(Carry::parse(&text), Err(want), "{text:?}");
        }
        // Positive control: the unedited text parses.
        assert!(Carry::parse(&good).is_ok());
    }

    #[test]
    fn a_carried_jail_is_reused_only_for_the_same_create_only_parameters() {
        let previous =
            Carry::parse(&carry(|p| p.cpus = Some(CpuSet::parse("0-3").unwrap())).render())
                .unwrap()
                .built;
        let same = plan(|p| p.cpus = Some(CpuSet::parse("0-3").unwrap()));
        assert_eq!(reuse(&previous, &same), Reuse::Yes);
        let shrunk = plan(|p| p.cpus = Some(CpuSet::parse("1").unwrap()));
        assert_eq!(reuse(&previous, &shrunk), Reuse::Yes);
        let other_ip = plan(|p| {
            p.cpus = Some(CpuSet::parse("0-3").unwrap());
            p.ip = PrisonIp::parse(&["192.0.2.7"], false).unwrap();
        });
        assert_eq!(reuse(&previous, &other_ip), Reuse::No("PrisonIP changed"));
    }
}
