//! How much the probe may use: time (`sleep=`), memory (`alloc=`), processes (`fork=`), CPUs
//! (`widen=`).
//!
//! The prison's limits end these checks in different ways: a memory limit gets the probe
//! OOM-killed (no answer at all), pids.max makes fork fail with EAGAIN.

use std::time::Duration;

use crate::json::Object;
use crate::sys::{cvt, Errno, Failure, Outcome};

const MIB: u64 = 1 << 20;

/// `sleep=ms`: wait before answering (the value is already capped by the parser).
pub fn sleep(ms: u64) -> Outcome {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(Object::new().with("slept_ms", ms))
}

/// `widen=1`: ask for every CPU. Plain affinity anyone may widen; a cpuset clamps the request
/// to its own CPUs (the call succeeds with fewer, or fails with EINVAL when none is left).
pub fn widen_affinity() -> Outcome {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE, so the bit lies inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the kernel reads size_of::<cpu_set_t>() bytes from `set`.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(Object::new().with("asked", libc::CPU_SETSIZE))
}

/// Memory taken by `alloc=`, held until the report has been written.
#[derive(Debug, Default)]
pub struct Hoard(Vec<Vec<u8>>);

/// `alloc=bytes`: allocate and touch the memory 1 MiB at a time.
pub fn alloc(bytes: u64, hoard: &mut Hoard) -> Outcome {
    let mut allocated = 0u64;
    while allocated < bytes {
        let step = usize::try_from((bytes - allocated).min(MIB)).unwrap_or(1 << 20);
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(step).is_err() || hoard.0.try_reserve(1).is_err() {
            return Err(Failure::from(Errno(libc::ENOMEM))
                .with("requested", bytes)
                .with("allocated", allocated));
        }
        // Writing every byte makes the kernel back (and charge) every page.
        chunk.resize(step, 0xa5);
        // Keeps the optimizer from dropping writes that are never read.
        std::hint::black_box(&mut chunk);
        hoard.0.push(chunk);
        allocated += step as u64;
    }
    Ok(Object::new()
        .with("requested", bytes)
        .with("allocated", allocated))
}

/// `fork=n`: fork up to n children that sleep 1 s, stopping at the first failure; all are
/// reaped before this returns.
pub fn fork_children(n: u32) -> Outcome {
    let mut children = Vec::with_capacity(n as usize);
    let mut failure = None;
    for _ in 0..n {
        // SAFETY: the probe is single-threaded, and the child makes only async-signal-safe calls.
        match unsafe { libc::fork() } {
            -1 => {
                failure = Some(Errno::last());
                break;
            }
            0 => {
                // SAFETY: in the forked child: sleep and _exit are async-signal-safe, and _exit
                // skips the exit handlers and buffers that belong to the parent.
                unsafe {
                    libc::sleep(1);
                    libc::_exit(0)
                }
            }
            pid => children.push(pid),
        }
    }
    let reaped = children
        .iter()
        .filter(|&&pid| wait_for(pid).is_ok())
        .count();
    let fields = Object::new()
        .with("requested", n)
        .with("forked", children.len())
        .with("reaped", reaped);
    match failure {
        None => Ok(fields),
        Some(errno) => Err(Failure {
            extra: fields,
            ..Failure::from(errno)
        }),
    }
}

/// Waits for one child and returns its wait status.
pub fn wait_for(pid: libc::pid_t) -> Result<libc::c_int, Errno> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a valid c_int.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(Errno(libc::EINTR)) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

/// `syscalls=n`: n getppid() calls in a tight loop, timed; reports the total time in nanoseconds.
pub fn syscall_loop(n: u64) -> Outcome {
    let started = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions; the raw syscall avoids any libc caching.
        std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    let ns = started.elapsed().as_nanos();
    Ok(Object::new()
        .with("calls", n)
        .with("total_ns", u64::try_from(ns).unwrap_or(u64::MAX)))
}

/// `seccomp_floor=n`: the getppid loop without and then with an allow-all seccomp filter
/// (no_new_privs is set for it): the cost of entering the kernel through seccomp at all,
/// against which the prison's own filter is judged. It leaves the filter on this process.
pub fn seccomp_floor(n: u64) -> Outcome {
    let time = |n: u64| -> u64 {
        let started = std::time::Instant::now();
        for _ in 0..n {
            // SAFETY: getppid has no preconditions.
            std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
        }
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    };
    time(n / 10); // warm up
    let without = time(n);
    let mut allow = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: allow.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    // SAFETY: `program` points to one valid instruction that outlives the call.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        )
    })?;
    time(n / 10);
    let with = time(n);
    Ok(Object::new()
        .with("calls", n)
        .with("without_ns", without)
        .with("with_allow_all_ns", with))
}
