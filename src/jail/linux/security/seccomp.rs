//! The seccomp part of PrisonSecurity: a denylist, described here as data, compiled once in
//! the parent and installed in each child.
//!
//! Four stacked filters, all evaluated by the kernel on every call (the strictest answer wins):
//! - the hand-written [`prefilter`]: a call from another architecture (`int 0x80`, i386) kills
//!   the process, because i386 numbers would bypass every x86_64 rule; a number above the
//!   reviewed table (x32 numbers included: bit 30) gets ENOSYS, so a syscall added to a later
//!   kernel is refused until it is reviewed, and libc falls back as on an older kernel;
//! - three [`seccompiler`] denylists, one per answer: EPERM (most), ENOSYS (where libc must
//!   fall back: `clone3`, whose flags seccomp cannot read, and io_uring, whose operations
//!   seccomp cannot see), EAFNOSUPPORT (socket families other than unix, inet, inet6, netlink).
//!
//! Denials return an errno instead of killing, so Apache and scripts log an error and go on.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::config::Security;

/// The highest x86_64 syscall number reviewed for this table (`file_setattr`, Linux 6.17).
pub const LAST_REVIEWED: u32 = 469;
/// `AUDIT_ARCH_X86_64`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

// Syscalls newer than the libc crate's table.
const SYS_OPEN_TREE_ATTR: i64 = 467;
const SYS_FILE_SETATTR: i64 = 469;

// ioctl commands (compared on their low 32 bits: the kernel truncates cmd to unsigned int, so a
// 64-bit compare could be bypassed with high bits set, as in Flatpak's CVE-2019-10063).
const FS_IOC_SETFLAGS: u64 = 0x4008_6602;
const FS_IOC32_SETFLAGS: u64 = 0x4004_6602;
const FS_IOC_FSSETXATTR: u64 = 0x401c_5820;
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;

/// `socket(2)` type argument: the low bits are the type, the rest SOCK_CLOEXEC/SOCK_NONBLOCK.
const SOCK_TYPE_MASK: u64 = 0xf;
const SOCK_PACKET: u64 = 10;
const NETLINK_ROUTE: u64 = 0;

/// How a denied call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deny {
    Perm,
    NoSys,
    AfNoSupport,
}

impl Deny {
    pub fn errno(self) -> u32 {
        let errno = match self {
            Deny::Perm => libc::EPERM,
            Deny::NoSys => libc::ENOSYS,
            Deny::AfNoSupport => libc::EAFNOSUPPORT,
        };
        errno.unsigned_abs()
    }
}

/// A condition on a syscall argument, compared on its low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// `arg[i] == value`
    Eq(u8, u64),
    /// `arg[i] != value`
    Ne(u8, u64),
    /// `arg[i] & mask == value`
    Masked(u8, u64, u64),
}

/// One entry of the denylist: the call is denied when any of `when` holds (each an AND of
/// conditions); an empty `when` denies it always.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    pub nr: i64,
    pub deny: Deny,
    pub when: Vec<Vec<Arg>>,
}

fn always(deny: Deny, calls: &'static [(&'static str, i64)]) -> impl Iterator<Item = Entry> {
    calls.iter().map(move |&(name, nr)| Entry {
        name,
        nr,
        deny,
        when: Vec::new(),
    })
}

/// SysV IPC: denied by ALL, allowed by IPC (inside the prison's own IPC namespace).
pub const SYSV_IPC: [(&str, i64); 12] = [
    ("msgget", libc::SYS_msgget),
    ("msgsnd", libc::SYS_msgsnd),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgctl", libc::SYS_msgctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("semctl", libc::SYS_semctl),
    ("shmget", libc::SYS_shmget),
    ("shmat", libc::SYS_shmat),
    ("shmdt", libc::SYS_shmdt),
    ("shmctl", libc::SYS_shmctl),
];

/// Denied with EPERM whatever their arguments, grouped by the reason.
const DENIED: &[(&str, i64)] = &[
    // Kernel modules (also blocks module autoload through odd socket families, below).
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    // Mounts, the new mount API, quotas, chroot.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("open_tree_attr", SYS_OPEN_TREE_ATTR),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    // New namespaces, or joining others (clone's flags are checked below, clone3 is ENOSYS).
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    // The machine itself: kexec, reboot, swap, accounting, kernel log, clocks, host names.
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("vhangup", libc::SYS_vhangup),
    ("uselib", libc::SYS_uselib),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    // Kernel attack surface: BPF, perf, userfaultfd, keyrings (per uid, shared with the host).
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    // Other processes' memory and files.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    // File handles: "shocker", opening any inode of a mounted filesystem.
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    // NUMA placement of other processes' memory.
    ("mbind", libc::SYS_mbind),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("move_pages", libc::SYS_move_pages),
    // File attribute flags (immutable, append-only): chflags.
    ("file_setattr", SYS_FILE_SETATTR),
];

/// ENOSYS, so libc falls back: glibc's pthread_create retries clone3 with clone (EPERM would
/// fail it); io_uring operations bypass seccomp, and programs fall back to plain syscalls.
const NO_SYSCALL: &[(&str, i64)] = &[
    ("clone3", libc::SYS_clone3),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
];

/// The namespace flags of `clone(2)` (its first argument on x86_64).
pub const CLONE_NEW_FLAGS: [(&str, i32); 7] = [
    ("CLONE_NEWNS", libc::CLONE_NEWNS),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER),
    ("CLONE_NEWPID", libc::CLONE_NEWPID),
    ("CLONE_NEWNET", libc::CLONE_NEWNET),
];

fn flag(value: i32) -> u64 {
    u64::from(value.unsigned_abs())
}

/// The denylist of a level. `None` denies nothing.
pub fn denylist(level: Security) -> Vec<Entry> {
    if level == Security::None {
        return Vec::new();
    }
    let mut list: Vec<Entry> = always(Deny::Perm, DENIED).collect();
    if level == Security::All {
        list.extend(always(Deny::Perm, &SYSV_IPC));
    }
    list.extend(always(Deny::NoSys, NO_SYSCALL));
    list.push(Entry {
        name: "clone",
        nr: libc::SYS_clone,
        deny: Deny::Perm,
        when: CLONE_NEW_FLAGS
            .iter()
            .map(|&(_, f)| vec![Arg::Masked(0, flag(f), flag(f))])
            .collect(),
    });
    let sock_type = |t: u64| Arg::Masked(1, SOCK_TYPE_MASK, t);
    let not_netlink = |arg: Arg| vec![Arg::Ne(0, flag(libc::AF_NETLINK)), arg];
    list.push(Entry {
        name: "socket",
        nr: libc::SYS_socket,
        deny: Deny::Perm,
        when: vec![
            // Raw and packet sockets. Netlink sockets are SOCK_RAW or SOCK_DGRAM by nature
            // (glibc opens route netlink as SOCK_RAW) and only their protocol matters.
            not_netlink(sock_type(flag(libc::SOCK_RAW))),
            not_netlink(sock_type(SOCK_PACKET)),
            // Netlink only as NETLINK_ROUTE (getaddrinfo, getifaddrs); changing routes through
            // it still needs CAP_NET_ADMIN. No NETLINK_NETFILTER, audit, uevents, ...
            vec![
                Arg::Eq(0, flag(libc::AF_NETLINK)),
                Arg::Ne(2, NETLINK_ROUTE),
            ],
        ],
    });
    let families = [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ];
    list.push(Entry {
        name: "socket",
        nr: libc::SYS_socket,
        deny: Deny::AfNoSupport,
        when: vec![families.iter().map(|&f| Arg::Ne(0, flag(f))).collect()],
    });
    list.push(Entry {
        name: "socketpair",
        nr: libc::SYS_socketpair,
        deny: Deny::AfNoSupport,
        when: vec![vec![Arg::Ne(0, flag(libc::AF_UNIX))]],
    });
    list.push(Entry {
        name: "ioctl",
        nr: libc::SYS_ioctl,
        deny: Deny::Perm,
        when: [
            FS_IOC_SETFLAGS,
            FS_IOC32_SETFLAGS,
            FS_IOC_FSSETXATTR,
            TIOCSTI,
            TIOCLINUX,
        ]
        .iter()
        .map(|&cmd| vec![Arg::Eq(1, cmd)])
        .collect(),
    });
    // Execution domains other than Linux's (PER_LINUX 0, or the query 0xffffffff): some
    // disable address-space randomisation or map page zero.
    list.push(Entry {
        name: "personality",
        nr: libc::SYS_personality,
        deny: Deny::Perm,
        when: vec![vec![Arg::Ne(0, 0), Arg::Ne(0, 0xffff_ffff)]],
    });
    list
}

// Classic BPF opcodes (linux/bpf_common.h) and seccomp_data offsets, for the prefilter.
pub const BPF_LD_W_ABS: u16 = 0x20;
pub const BPF_JMP_JEQ_K: u16 = 0x15;
pub const BPF_JMP_JGT_K: u16 = 0x25;
pub const BPF_RET_K: u16 = 0x06;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The hand-written first filter: architecture, then the syscall-number ceiling. Every branch
/// is covered by `tests::prefilter_branches`.
pub fn prefilter() -> BpfProgram {
    vec![
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        // Native: skip the kill.
        insn(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        // Unsigned: x32 numbers (bit 30) and anything newer than the table are above it.
        insn(BPF_JMP_JGT_K, 0, 1, LAST_REVIEWED),
        insn(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | Deny::NoSys.errno(),
        ),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

fn condition(arg: Arg) -> Result<SeccompCondition, seccompiler::BackendError> {
    let (index, op, value) = match arg {
        Arg::Eq(i, v) => (i, SeccompCmpOp::Eq, v),
        Arg::Ne(i, v) => (i, SeccompCmpOp::Ne, v),
        Arg::Masked(i, mask, v) => (i, SeccompCmpOp::MaskedEq(mask), v),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
}

/// Compiles the level's filters, in the order they are installed (prefilter first). Empty for
/// `None`.
pub fn compile(level: Security) -> Result<Vec<BpfProgram>, String> {
    let list = denylist(level);
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_deny: BTreeMap<Deny, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for entry in list {
        let rules = by_deny
            .entry(entry.deny)
            .or_default()
            .entry(entry.nr)
            .or_default();
        for all_of in entry.when {
            let conditions = all_of
                .into_iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", entry.name))?;
            rules.push(SeccompRule::new(conditions).map_err(|e| format!("{}: {e}", entry.name))?);
        }
    }
    let mut programs = vec![prefilter()];
    for (deny, rules) in by_deny {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(deny.errno()),
            TargetArch::x86_64,
        )
        .map_err(|e| e.to_string())?;
        programs.push(BpfProgram::try_from(filter).map_err(|e| e.to_string())?);
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const I386: u32 = 3 | 0x4000_0000;
    const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e.unsigned_abs()
    }

    /// `struct seccomp_data` as the filter sees it.
    #[derive(Debug, Clone, Copy)]
    struct Call {
        nr: u32,
        arch: u32,
        args: [u64; 6],
    }

    impl Call {
        fn new(nr: i64, args: &[u64]) -> Self {
            let mut all = [0; 6];
            all[..args.len()].copy_from_slice(args);
            Call {
                nr: nr as u32,
                arch: AUDIT_ARCH_X86_64,
                args: all,
            }
        }

        fn word(&self, offset: u32) -> u32 {
            match offset {
                0 => self.nr,
                4 => self.arch,
                8..=12 => 0, // instruction_pointer: never loaded
                16..=63 if offset % 4 == 0 => {
                    let arg = self.args[((offset - 16) / 8) as usize];
                    if offset % 8 == 0 {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                _ => panic!("load at offset {offset}"),
            }
        }
    }

    /// A classic-BPF interpreter for the instructions seccomp filters use: runs one program on
    /// one call, like the kernel. Panics on anything else, so an unexpected instruction fails
    /// the test rather than being mis-evaluated.
    fn run(program: &[sock_filter], call: &Call) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = &program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                0x20 => a = call.word(i.k),       // ld [k]
                0x54 => a &= i.k,                 // and #k
                0x05 => pc += i.k as usize,       // ja
                0x15 => pc += jump(a == i.k),     // jeq
                0x25 => pc += jump(a > i.k),      // jgt
                0x35 => pc += jump(a >= i.k),     // jge
                0x45 => pc += jump(a & i.k != 0), // jset
                0x06 => return i.k,               // ret #k
                code => panic!("instruction {code:#x} at {}", pc - 1),
            }
        }
    }

    /// The kernel's answer for a stack of filters (`seccomp_run_filters`): the most
    /// restrictive action wins (lowest action value, KILL_PROCESS counting as lowest of all);
    /// on a tie, the most recently installed filter's answer.
    fn verdict(programs: &[BpfProgram], call: &Call) -> u32 {
        let rank = |ret: u32| (ret & libc::SECCOMP_RET_ACTION_FULL) as i32;
        programs
            .iter()
            .rev()
            .map(|p| run(p, call))
            .min_by_key(|&ret| rank(ret))
            .expect("at least one filter")
    }

    #[test]
    fn prefilter_branches() {
        let p = prefilter();
        let on = |nr: u32, arch: u32| {
            run(
                &p,
                &Call {
                    nr,
                    arch,
                    args: [0; 6],
                },
            )
        };
        let cases = [
            // (nr, arch, expected, branch)
            (0, AUDIT_ARCH_X86_64, RET_ALLOW, "native, lowest"),
            (
                LAST_REVIEWED,
                AUDIT_ARCH_X86_64,
                RET_ALLOW,
                "native, last reviewed",
            ),
            (
                LAST_REVIEWED + 1,
                AUDIT_ARCH_X86_64,
                errno(libc::ENOSYS),
                "newer than the table",
            ),
            (
                0x4000_0000 | 41,
                AUDIT_ARCH_X86_64,
                errno(libc::ENOSYS),
                "x32 socket",
            ),
            (u32::MAX, AUDIT_ARCH_X86_64, errno(libc::ENOSYS), "nr -1"),
            (359, I386, RET_KILL, "i386 socket via int 0x80"),
            (20, I386, RET_KILL, "i386 getpid"),
            (0, 0, RET_KILL, "no arch"),
        ];
        for (nr, arch, expected, branch) in cases {
            assert_eq!(on(nr, arch), expected, "{branch}");
        }
    }

    fn all() -> Vec<BpfProgram> {
        compile(Security::All).unwrap()
    }

    #[test]
    fn none_installs_nothing() {
        assert!(compile(Security::None).unwrap().is_empty());
        assert!(denylist(Security::None).is_empty());
    }

    #[test]
    fn every_listed_call_is_denied_with_its_errno_and_ordinary_calls_pass() {
        let programs = all();
        for entry in denylist(Security::All) {
            if entry.when.is_empty() {
                let got = verdict(&programs, &Call::new(entry.nr, &[]));
                assert_eq!(got, errno(entry.deny.errno() as i32), "{}", entry.name);
            }
        }
        let ordinary = [
            ("read", libc::SYS_read),
            ("write", libc::SYS_write),
            ("openat", libc::SYS_openat),
            ("mmap", libc::SYS_mmap),
            ("futex", libc::SYS_futex),
            ("epoll_wait", libc::SYS_epoll_wait),
            ("accept4", libc::SYS_accept4),
            ("execve", libc::SYS_execve),
            ("setuid", libc::SYS_setuid),
            ("prctl", libc::SYS_prctl),
            ("seccomp", libc::SYS_seccomp),
            ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
            ("wait4", libc::SYS_wait4),
            ("kill", libc::SYS_kill),
        ];
        for (name, nr) in ordinary {
            assert_eq!(verdict(&programs, &Call::new(nr, &[])), RET_ALLOW, "{name}");
        }
    }

    #[test]
    fn sysv_ipc_is_denied_by_all_and_allowed_by_ipc() {
        let (all, ipc) = (all(), compile(Security::Ipc).unwrap());
        for (name, nr) in SYSV_IPC {
            let call = Call::new(nr, &[]);
            assert_eq!(verdict(&all, &call), errno(libc::EPERM), "ALL {name}");
            assert_eq!(verdict(&ipc, &call), RET_ALLOW, "IPC {name}");
        }
        // IPC keeps everything else of ALL.
        let mount = Call::new(libc::SYS_mount, &[]);
        assert_eq!(verdict(&ipc, &mount), errno(libc::EPERM));
    }

    #[test]
    fn clone_may_make_threads_and_processes_but_no_namespace() {
        let p = all();
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 | 17;
        for flags in [thread, fork, 17] {
            let call = Call::new(libc::SYS_clone, &[flags]);
            assert_eq!(verdict(&p, &call), RET_ALLOW, "{flags:#x}");
        }
        for (name, f) in CLONE_NEW_FLAGS {
            let call = Call::new(libc::SYS_clone, &[fork | flag(f)]);
            assert_eq!(verdict(&p, &call), errno(libc::EPERM), "{name}");
        }
        let clone3 = Call::new(libc::SYS_clone3, &[0, 88]);
        assert_eq!(verdict(&p, &clone3), errno(libc::ENOSYS));
    }

    #[test]
    fn sockets_unix_inet_inet6_and_route_netlink_only_never_raw() {
        let p = all();
        let cloexec = flag(libc::SOCK_CLOEXEC) | flag(libc::SOCK_NONBLOCK);
        let socket = |family: i32, kind: u64, protocol: u64| {
            verdict(
                &p,
                &Call::new(libc::SYS_socket, &[flag(family), kind, protocol]),
            )
        };
        let stream = flag(libc::SOCK_STREAM);
        let dgram = flag(libc::SOCK_DGRAM);
        let raw = flag(libc::SOCK_RAW);
        let cases = [
            (libc::AF_UNIX, stream, 0, RET_ALLOW),
            (libc::AF_UNIX, dgram | cloexec, 0, RET_ALLOW),
            (libc::AF_INET, stream | cloexec, 6, RET_ALLOW),
            (libc::AF_INET6, dgram, 17, RET_ALLOW),
            (libc::AF_NETLINK, raw | cloexec, NETLINK_ROUTE, RET_ALLOW),
            (libc::AF_NETLINK, dgram | cloexec, NETLINK_ROUTE, RET_ALLOW),
            (libc::AF_NETLINK, dgram, 12, errno(libc::EPERM)), // NETLINK_NETFILTER
            (libc::AF_NETLINK, dgram, 9, errno(libc::EPERM)),  // NETLINK_AUDIT
            (libc::AF_NETLINK, raw, 12, errno(libc::EPERM)),
            (libc::AF_UNIX, raw, 0, errno(libc::EPERM)),
            (libc::AF_INET, raw, 1, errno(libc::EPERM)),
            (libc::AF_INET, raw | cloexec, 255, errno(libc::EPERM)),
            (libc::AF_INET6, raw, 58, errno(libc::EPERM)),
            (libc::AF_INET, SOCK_PACKET, 0, errno(libc::EPERM)),
            (libc::AF_PACKET, raw, 0x0300, errno(libc::EAFNOSUPPORT)),
            (libc::AF_PACKET, dgram, 0x0300, errno(libc::EAFNOSUPPORT)),
            (libc::AF_BLUETOOTH, stream, 0, errno(libc::EAFNOSUPPORT)),
            (libc::AF_VSOCK, stream, 0, errno(libc::EAFNOSUPPORT)),
            (libc::AF_ALG, 5, 0, errno(libc::EAFNOSUPPORT)),
        ];
        for (family, kind, protocol, expected) in cases {
            assert_eq!(
                socket(family, kind, protocol),
                expected,
                "socket({family}, {kind:#x}, {protocol})"
            );
        }
        // High bits of the family do not smuggle a family past the compare.
        let smuggled = Call::new(libc::SYS_socket, &[1 << 32 | flag(libc::AF_PACKET), dgram]);
        assert_eq!(verdict(&p, &smuggled), errno(libc::EAFNOSUPPORT));
        let pair = |family: i32| {
            verdict(
                &p,
                &Call::new(libc::SYS_socketpair, &[flag(family), stream]),
            )
        };
        assert_eq!(pair(libc::AF_UNIX), RET_ALLOW);
        assert_eq!(pair(libc::AF_INET), errno(libc::EAFNOSUPPORT));
    }

    #[test]
    fn ioctl_commands_compare_on_their_low_32_bits() {
        let p = all();
        let ioctl = |cmd: u64| verdict(&p, &Call::new(libc::SYS_ioctl, &[3, cmd]));
        for cmd in [
            FS_IOC_SETFLAGS,
            FS_IOC32_SETFLAGS,
            FS_IOC_FSSETXATTR,
            TIOCSTI,
            TIOCLINUX,
        ] {
            assert_eq!(ioctl(cmd), errno(libc::EPERM), "{cmd:#x}");
            assert_eq!(
                ioctl(0xdead_0000_0000_0000 | cmd),
                errno(libc::EPERM),
                "{cmd:#x}"
            );
        }
        for cmd in [
            0x8008_6601, /* FS_IOC_GETFLAGS */
            0x5401,      /* TCGETS */
            0x541b,      /* FIONREAD */
        ] {
            assert_eq!(ioctl(cmd), RET_ALLOW, "{cmd:#x}");
        }
    }

    #[test]
    fn personality_may_only_be_queried_or_set_to_linux() {
        let p = all();
        let personality = |v: u64| verdict(&p, &Call::new(libc::SYS_personality, &[v]));
        assert_eq!(personality(0), RET_ALLOW);
        assert_eq!(personality(0xffff_ffff), RET_ALLOW);
        assert_eq!(personality(0x0040000), errno(libc::EPERM)); // ADDR_NO_RANDOMIZE
        assert_eq!(personality(0x0008), errno(libc::EPERM)); // PER_LINUX32
    }

    #[test]
    fn other_architectures_are_killed_and_newer_calls_get_enosys() {
        let p = all();
        let i386 = Call {
            nr: 359,
            arch: I386,
            args: [2, 3, 0, 0, 0, 0],
        };
        assert_eq!(verdict(&p, &i386), RET_KILL);
        let newer = Call::new(i64::from(LAST_REVIEWED) + 1, &[]);
        assert_eq!(verdict(&p, &newer), errno(libc::ENOSYS));
        let x32_socket = Call::new(0x4000_0000 | libc::SYS_socket, &[17, 3]);
        assert_eq!(verdict(&p, &x32_socket), errno(libc::ENOSYS));
    }

    #[test]
    fn the_table_is_reviewed_up_to_its_ceiling() {
        for entry in denylist(Security::All) {
            assert!(
                entry.nr <= i64::from(LAST_REVIEWED),
                "{} ({}) is above LAST_REVIEWED",
                entry.name,
                entry.nr
            );
        }
    }
}
