//! `attack=1`: the attack battery. Each entry tries one escape or abuse and reports whether the
//! kernel let it happen (`ok`) or the errno it answered.
//!
//! Every attempt is harmless even where it succeeds, including as root outside any prison (the
//! tests' negative control): mounts target a path that does not exist, the host name is set to
//! the current one, ids and flags are set to what they already are, namespaces are made in a
//! forked child that exits at once, SysV objects are removed again. Arguments are chosen so that
//! the errno tells who refused: the kernel often checks a path or an argument before a
//! capability, so an unrestricted process gets ENOENT or EINVAL where PrisonSecurity says EPERM.
//!
//! Optional: `fdpass=/socket` receives a directory descriptor from a host process over a unix
//! socket (a "leaked" descriptor) and tries to read through it; `kill=pid` tries to signal a
//! process outside the prison; `tmp=dir` checks that ordinary temporary files still work.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::json::{Json, Object};
use crate::resources::wait_for;
use crate::sys::{cvt, report, Errno, Failure, Outcome};

const MISSING: &CStr = c"/nonexistent-prison-probe";
/// The file the tests put next to the directory passed with `fdpass=`.
const SECRET_NAME: &CStr = c"host-secret.txt";

/// What the battery needs from the query string.
#[derive(Debug, Default, PartialEq)]
pub struct Targets {
    pub fdpass: Option<Vec<u8>>,
    pub kill: Option<libc::pid_t>,
    /// `tmp=dir`: ordinary work, a temporary file there.
    pub tmp: Option<Vec<u8>>,
}

fn done() -> Outcome {
    Ok(Object::new())
}

fn ret(value: libc::c_long) -> Outcome {
    cvt(value)?;
    done()
}

fn ret_fd(value: libc::c_long) -> Outcome {
    let fd = cvt(value)?;
    // SAFETY: closing a descriptor the attempt just created.
    unsafe { libc::close(fd as RawFd) };
    done()
}

/// Runs `attempt` in a forked child and reports its result: the child exits with 0 or the
/// errno; a child killed by a signal is reported with `signal`.
fn in_child(attempt: fn() -> libc::c_long) -> Outcome {
    // SAFETY: the probe is single-threaded; the child makes raw syscalls and _exits.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        let code = if attempt() < 0 { Errno::last().0 } else { 0 };
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let status = wait_for(pid)?;
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        return Err(Failure {
            errno: Errno(0),
            detail: Some(format!("killed by signal {signal}")),
            extra: Object::new().with("signal", signal),
        });
    }
    match libc::WEXITSTATUS(status) {
        0 => done(),
        errno => Err(Errno(errno).into()),
    }
}

fn syscall6(nr: libc::c_long, a: [libc::c_long; 6]) -> libc::c_long {
    // SAFETY: every caller passes arguments that are null, integers or pointers to live
    // buffers of the size the syscall reads or writes.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

fn ptr<T>(p: *const T) -> libc::c_long {
    p as libc::c_long
}

fn unshare_with_user(extra: libc::c_int) -> Outcome {
    // Function pointers cannot capture: one per flag.
    let attempt: fn() -> libc::c_long = match extra {
        libc::CLONE_NEWNS => || {
            syscall6(
                libc::SYS_unshare,
                [
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as _,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        libc::CLONE_NEWNET => || {
            syscall6(
                libc::SYS_unshare,
                [
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWNET) as _,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        libc::CLONE_NEWIPC => || {
            syscall6(
                libc::SYS_unshare,
                [
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWIPC) as _,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        libc::CLONE_NEWUTS => || {
            syscall6(
                libc::SYS_unshare,
                [
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWUTS) as _,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        libc::CLONE_NEWPID => || {
            syscall6(
                libc::SYS_unshare,
                [
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWPID) as _,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        libc::CLONE_NEWCGROUP => || {
            syscall6(
                libc::SYS_unshare,
                [
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP) as _,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        _ => || syscall6(libc::SYS_unshare, [libc::CLONE_NEWUSER as _, 0, 0, 0, 0, 0]),
    };
    in_child(attempt)
}

/// A process made by raw clone/clone3 (fork semantics: no new stack) exits at once.
fn clone_and_reap(ret: libc::c_long) -> Outcome {
    if ret == 0 {
        // SAFETY: in the new child: leave at once.
        unsafe { libc::_exit(0) };
    }
    let pid = cvt(ret)?;
    wait_for(pid as libc::pid_t)?;
    done()
}

fn clone3_attempt() -> Outcome {
    let args = libc::clone_args {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: 0,
    };
    let size = std::mem::size_of::<libc::clone_args>() as libc::c_long;
    clone_and_reap(syscall6(libc::SYS_clone3, [ptr(&args), size, 0, 0, 0, 0]))
}

fn sysv(kind: &str) -> Outcome {
    let key = libc::IPC_PRIVATE;
    let flags = libc::IPC_CREAT | 0o600;
    // SAFETY: plain SysV calls on integers; the object is removed at once.
    unsafe {
        match kind {
            "msg" => {
                let id = cvt(libc::msgget(key, flags))?;
                libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
            "sem" => {
                let id = cvt(libc::semget(key, 1, flags))?;
                libc::semctl(id, 0, libc::IPC_RMID);
            }
            _ => {
                let id = cvt(libc::shmget(key, 4096, flags))?;
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }
    done()
}

fn int80_getpid() -> libc::c_long {
    let mut eax: libc::c_long = 20; // i386 getpid
                                    // SAFETY: the 32-bit syscall entry with getpid, which takes no arguments and touches no
                                    // memory; int 0x80 clobbers nothing but eax.
    unsafe { std::arch::asm!("int 0x80", inout("eax") eax) };
    if eax < 0 && eax > -4096 {
        // SAFETY: errno is thread-local and writable.
        unsafe { *libc::__errno_location() = -eax as libc::c_int };
        -1
    } else {
        eax
    }
}

fn hostname_again() -> Outcome {
    let mut name = [0u8; 65];
    // SAFETY: the buffer holds 65 bytes, the most a host name takes with its NUL.
    cvt(unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) })?;
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // SAFETY: sets the host name to what it already is.
    ret(unsafe { libc::sethostname(name.as_ptr().cast(), len) } as _)
}

fn socket(family: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> Outcome {
    // SAFETY: socket takes integers only.
    ret_fd(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) } as _)
}

fn ioctl_stdin(cmd: u64) -> Outcome {
    let zero: libc::c_int = 0;
    ret(syscall6(
        libc::SYS_ioctl,
        [0, cmd as libc::c_long, ptr(&zero), 0, 0, 0],
    ))
}

fn bind_port_80() -> Outcome {
    // SAFETY: socket takes integers only.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 80u16.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` is a sockaddr_in of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), ptr(&addr) as *const libc::sockaddr, len) })?;
    done()
}

/// Asks for CAP_SETGID and CAP_SETUID back: a no-op for root, refused to anyone without them.
fn capset_setuid() -> Outcome {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let caps = CapabilitySet::SETGID | CapabilitySet::SETUID;
    let sets = CapabilitySets {
        effective: caps,
        permitted: caps,
        inheritable: CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, sets).map_err(std::io::Error::from)?;
    done()
}

/// Creates, writes, reads back and removes a file in `dir`.
fn temp_file(dir: &[u8]) -> Outcome {
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    let dir = std::path::Path::new(std::ffi::OsStr::from_bytes(dir));
    let path = dir.join(format!("probe-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let result = file.write_all(b"temp").and_then(|()| {
        let mut back = String::new();
        std::fs::File::open(&path)?.read_to_string(&mut back)?;
        Ok(back)
    });
    std::fs::remove_file(&path)?;
    Ok(Object::new().with("read", result?))
}

fn personality_linux32() -> Outcome {
    // SAFETY: personality takes an integer; the old value is restored at once.
    let old = cvt(unsafe { libc::personality(0x0008) })?; // PER_LINUX32
                                                          // SAFETY: as above.
    unsafe { libc::personality(old as libc::c_ulong) };
    done()
}

fn pidfd_getfd_self() -> Outcome {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let pidfd = cvt(syscall6(libc::SYS_pidfd_open, [pid as _, 0, 0, 0, 0, 0]) as i64)?;
    let got = syscall6(libc::SYS_pidfd_getfd, [pidfd as _, 0, 0, 0, 0, 0]);
    // SAFETY: closing the pidfd made above.
    unsafe { libc::close(pidfd as RawFd) };
    ret_fd(got)
}

fn process_vm_readv_self() -> Outcome {
    let source = [7u8; 8];
    let mut target = [0u8; 8];
    let local = libc::iovec {
        iov_base: target.as_mut_ptr().cast(),
        iov_len: target.len(),
    };
    let remote = libc::iovec {
        iov_base: source.as_ptr() as *mut libc::c_void,
        iov_len: source.len(),
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    ret(syscall6(
        libc::SYS_process_vm_readv,
        [pid as _, ptr(&local), 1, ptr(&remote), 1, 0],
    ))
}

fn io_uring() -> Outcome {
    let params = [0u8; 120]; // struct io_uring_params
    ret_fd(syscall6(
        libc::SYS_io_uring_setup,
        [1, ptr(params.as_ptr()), 0, 0, 0, 0],
    ))
}

fn name_to_handle() -> Outcome {
    // struct file_handle with room for a 128-byte handle.
    let mut handle = [0u32; 34];
    handle[0] = 128;
    let mut mount_id: libc::c_int = 0;
    ret(syscall6(
        libc::SYS_name_to_handle_at,
        [
            libc::AT_FDCWD as _,
            ptr(c"/".as_ptr()),
            ptr(handle.as_mut_ptr()),
            (&mut mount_id as *mut libc::c_int) as libc::c_long,
            0,
            0,
        ],
    ))
}

fn open_by_handle() -> Outcome {
    // An all-zero handle of type 1 (FILEID_INO32_GEN) that names nothing.
    let handle: [u32; 4] = [8, 1, 0, 0];
    ret_fd(syscall6(
        libc::SYS_open_by_handle_at,
        [
            libc::AT_FDCWD as _,
            ptr(handle.as_ptr()),
            libc::O_RDONLY as _,
            0,
            0,
            0,
        ],
    ))
}

fn kill(pid: Option<libc::pid_t>) -> Outcome {
    let pid = pid.ok_or_else(|| Failure::invalid("kill=: no pid given"))?;
    // SAFETY: signal 0 only checks whether the signal could be sent.
    ret(unsafe { libc::kill(pid, 0) } as _)
}

fn kill_parent() -> Outcome {
    // SAFETY: as above.
    ret(unsafe { libc::kill(libc::getppid(), 0) } as _)
}

/// Receives one descriptor over the unix socket at `path`.
fn receive_fd(path: &[u8]) -> Result<OwnedFd, Failure> {
    // SAFETY: socket takes integers only.
    let sock =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `sock` was just created and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.len() >= addr.sun_path.len() {
        return Err(Failure::invalid("fdpass: path too long"));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a sockaddr_un of `len` bytes.
    cvt(unsafe { libc::connect(sock.as_raw_fd(), ptr(&addr) as *const libc::sockaddr, len) })?;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: all-zero is a valid msghdr; the pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg describes live buffers of the sizes given.
    cvt(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } as i64)?;
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR stays within msg_control.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: a non-null cmsg points into `control`; SCM_RIGHTS data holds at least one int.
    unsafe {
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(Failure::invalid("fdpass: no descriptor received"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn read_through(dir: &OwnedFd, by_fchdir: bool) -> Outcome {
    let fd = if by_fchdir {
        // SAFETY: fchdir on a descriptor we own.
        cvt(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
        // SAFETY: SECRET_NAME is NUL-terminated.
        let fd = unsafe { libc::open(SECRET_NAME.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        // SAFETY: back to the root, whatever happened.
        unsafe { libc::chdir(c"/".as_ptr()) };
        fd
    } else {
        // SAFETY: SECRET_NAME is NUL-terminated, `dir` is open.
        unsafe {
            libc::openat(
                dir.as_raw_fd(),
                SECRET_NAME.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        }
    };
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just opened and nothing else owns it.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buf = [0u8; 64];
    // SAFETY: reads into a buffer of its length.
    let n =
        cvt(unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } as i64)?;
    Ok(Object::new().with(
        "read",
        String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
    ))
}

/// The whole battery.
pub fn battery(targets: &Targets) -> Object {
    let mut out = Object::new();
    let mut add = |name: &str, outcome: Outcome| out.insert(name, report(outcome));
    let p = |s: &CStr| ptr(s.as_ptr());

    // Mounts and the root.
    add(
        "mount_tmpfs",
        ret(syscall6(
            libc::SYS_mount,
            [p(c"tmpfs"), p(MISSING), p(c"tmpfs"), 0, 0, 0],
        )),
    );
    add(
        "mount_proc",
        ret(syscall6(
            libc::SYS_mount,
            [p(c"proc"), p(MISSING), p(c"proc"), 0, 0, 0],
        )),
    );
    add(
        "umount",
        ret(syscall6(libc::SYS_umount2, [p(MISSING), 0, 0, 0, 0, 0])),
    );
    add(
        "pivot_root",
        ret(syscall6(
            libc::SYS_pivot_root,
            [p(MISSING), p(MISSING), 0, 0, 0, 0],
        )),
    );
    add(
        "chroot",
        ret(syscall6(libc::SYS_chroot, [p(MISSING), 0, 0, 0, 0, 0])),
    );
    add(
        "fsopen",
        ret_fd(syscall6(
            libc::SYS_fsopen,
            [p(c"tmpfs"), 1 /* FSOPEN_CLOEXEC */, 0, 0, 0, 0],
        )),
    );
    add(
        "open_tree",
        ret_fd(syscall6(
            libc::SYS_open_tree,
            [
                libc::AT_FDCWD as _,
                p(MISSING),
                (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as _,
                0,
                0,
                0,
            ],
        )),
    );
    add(
        "quotactl",
        ret(syscall6(
            libc::SYS_quotactl,
            [0x0080_0007 /* Q_SYNC */, p(MISSING), 0, 0, 0, 0],
        )),
    );
    add(
        "proc_1_root",
        ret_fd(syscall6(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as _,
                p(c"/proc/1/root/etc/passwd"),
                libc::O_RDONLY as _,
                0,
                0,
                0,
            ],
        )),
    );

    // Namespaces.
    add("unshare_user", unshare_with_user(0));
    add("unshare_user_mnt", unshare_with_user(libc::CLONE_NEWNS));
    add("unshare_user_net", unshare_with_user(libc::CLONE_NEWNET));
    add("unshare_user_ipc", unshare_with_user(libc::CLONE_NEWIPC));
    add("unshare_user_uts", unshare_with_user(libc::CLONE_NEWUTS));
    add("unshare_user_pid", unshare_with_user(libc::CLONE_NEWPID));
    add(
        "unshare_user_cgroup",
        unshare_with_user(libc::CLONE_NEWCGROUP),
    );
    add(
        "clone_newuser",
        clone_and_reap(syscall6(
            libc::SYS_clone,
            [(libc::CLONE_NEWUSER | libc::SIGCHLD) as _, 0, 0, 0, 0, 0],
        )),
    );
    add("clone3", clone3_attempt());
    add(
        "setns",
        ret(syscall6(
            libc::SYS_setns,
            [0, libc::CLONE_NEWNET as _, 0, 0, 0, 0],
        )),
    );

    // SysV IPC.
    add("sysv_msgget", sysv("msg"));
    add("sysv_semget", sysv("sem"));
    add("sysv_shmget", sysv("shm"));

    // Kernel modules, the machine, clocks, host identity.
    add(
        "init_module",
        ret(syscall6(libc::SYS_init_module, [0, 0, p(c""), 0, 0, 0])),
    );
    add(
        "finit_module",
        ret(syscall6(libc::SYS_finit_module, [-1, p(c""), 0, 0, 0, 0])),
    );
    add(
        "kexec_load",
        ret(syscall6(libc::SYS_kexec_load, [0, 0, 0, 0x7fff_0000, 0, 0])),
    );
    add(
        "reboot",
        ret(syscall6(libc::SYS_reboot, [0, 0, 0, 0, 0, 0])),
    );
    add(
        "swapon",
        ret(syscall6(libc::SYS_swapon, [p(MISSING), 0, 0, 0, 0, 0])),
    );
    add(
        "settimeofday",
        ret(syscall6(libc::SYS_settimeofday, [0, 0, 0, 0, 0, 0])),
    );
    let now = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    add(
        "clock_settime",
        ret(syscall6(
            libc::SYS_clock_settime,
            [libc::CLOCK_MONOTONIC as _, ptr(&now), 0, 0, 0, 0],
        )),
    );
    add("sethostname", hostname_again());
    add("iopl", ret(syscall6(libc::SYS_iopl, [0, 0, 0, 0, 0, 0])));
    add(
        "ioperm",
        ret(syscall6(libc::SYS_ioperm, [0x80, 1, 0, 0, 0, 0])),
    );
    add(
        "acct",
        ret(syscall6(libc::SYS_acct, [p(MISSING), 0, 0, 0, 0, 0])),
    );

    // Kernel attack surface.
    add("bpf", ret(syscall6(libc::SYS_bpf, [1000, 0, 0, 0, 0, 0])));
    add(
        "perf_event_open",
        ret_fd(syscall6(libc::SYS_perf_event_open, [0, 0, -1, -1, 0, 0])),
    );
    add(
        "userfaultfd",
        ret_fd(syscall6(
            libc::SYS_userfaultfd,
            [
                (libc::O_CLOEXEC | 1/* UFFD_USER_MODE_ONLY */) as _,
                0,
                0,
                0,
                0,
                0,
            ],
        )),
    );
    add(
        "keyctl",
        ret(syscall6(
            libc::SYS_keyctl,
            [
                0,  /* GET_KEYRING_ID */
                -4, /* USER_KEYRING */
                0, 0, 0, 0,
            ],
        )),
    );
    add(
        "add_key",
        ret(syscall6(
            libc::SYS_add_key,
            [p(c"no-such-key-type"), p(c"probe"), 0, 0, -4, 0],
        )),
    );
    add("io_uring_setup", io_uring());
    add("name_to_handle_at", name_to_handle());
    add("open_by_handle_at", open_by_handle());

    // Other processes.
    add(
        "ptrace_traceme",
        in_child(|| syscall6(libc::SYS_ptrace, [libc::PTRACE_TRACEME as _, 0, 0, 0, 0, 0])),
    );
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    add(
        "ptrace_parent",
        ret(syscall6(
            libc::SYS_ptrace,
            [libc::PTRACE_PEEKDATA as _, parent as _, 0, 0, 0, 0],
        )),
    );
    add("process_vm_readv", process_vm_readv_self());
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    add(
        "kcmp",
        ret(syscall6(
            libc::SYS_kcmp,
            [me as _, me as _, 1 /* KCMP_VM */, 0, 0, 0],
        )),
    );
    add("pidfd_getfd", pidfd_getfd_self());
    add("kill_parent", kill_parent());
    if targets.kill.is_some() {
        add("kill_host_process", kill(targets.kill));
    }

    // Sockets.
    add(
        "socket_packet",
        socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300_u16.to_be() as _),
    );
    add(
        "socket_inet_raw",
        socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
    );
    add(
        "socket_inet6_raw",
        socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6),
    );
    add(
        "socket_netlink_netfilter",
        socket(libc::AF_NETLINK, libc::SOCK_RAW, 12),
    );
    add(
        "socket_netlink_audit",
        socket(libc::AF_NETLINK, libc::SOCK_RAW, 9),
    );
    add(
        "socket_netlink_route",
        socket(libc::AF_NETLINK, libc::SOCK_RAW, 0),
    );
    add("socket_vsock", socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0));
    add("socket_unix", socket(libc::AF_UNIX, libc::SOCK_STREAM, 0));
    add("socket_inet", socket(libc::AF_INET, libc::SOCK_STREAM, 0));
    add("bind_port_80", bind_port_80());

    // ioctls on stdin (not a tty, not a file with flags: unrestricted, they fail with ENOTTY).
    add("ioctl_setflags", ioctl_stdin(0x4008_6602));
    add(
        "ioctl_setflags_high_bits",
        ioctl_stdin(0xdead_0000_4008_6602),
    );
    add("ioctl_tiocsti", ioctl_stdin(0x5412));

    // Back to root.
    add(
        "setuid_0",
        ret(syscall6(libc::SYS_setuid, [0, 0, 0, 0, 0, 0])),
    );
    add("capset_setuid", capset_setuid());

    // Execution domains and syscall entries.
    add("personality_linux32", personality_linux32());
    add("int80_getpid", in_child(int80_getpid));
    add(
        "x32_getpid",
        ret(syscall6(0x4000_0000 | libc::SYS_getpid, [0; 6])),
    );
    add("syscall_after_table", ret(syscall6(470, [0; 6])));

    // Ordinary work that must keep working.
    if let Some(dir) = &targets.tmp {
        add("temp_file", temp_file(dir));
    }

    // A directory descriptor from the host.
    if let Some(path) = &targets.fdpass {
        match receive_fd(path) {
            Ok(dir) => {
                add("leaked_fd_openat", read_through(&dir, false));
                add("leaked_fd_fchdir", read_through(&dir, true));
            }
            Err(failure) => add("fdpass", Err(failure)),
        }
    }
    out
}

/// The battery's answer: the results and how many were attempted.
pub fn run(targets: &Targets) -> Json {
    let results = battery(targets);
    Object::new()
        .with("attempted", results.len())
        .with("results", results)
        .into()
}
