//! `exec=path`: whether the probe may start another program inside the prison.
//!
//! A plain fork + execve (not posix_spawn), so the test exercises the syscalls a CGI or shell
//! would use. The program gets no arguments, an empty environment and an empty stdin; its
//! stdout and stderr are captured so they cannot corrupt the probe's answer.
//!
//! The empty environment matters: the probe itself is the one program certain to be in the
//! prison, and with the CGI variables it would run `exec=` again, without end. Without them it
//! runs as a command-line tool with no parameters and prints its plain report.

use std::ffi::CString;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::json::Object;
use crate::resources::wait_for;
use crate::sys::{cvt, Errno, Failure, Outcome};

/// After this the program is killed and reported as `timed_out`.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the program's output is reported (enough for a nested probe report).
const OUTPUT_BYTES: usize = 16 * 1024;

pub fn exec(program: &[u8]) -> Outcome {
    let path =
        CString::new(program).map_err(|_| Failure::invalid("exec: path contains a NUL byte"))?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // Carries execve's errno back; closes without data when the exec succeeds (O_CLOEXEC).
    let (status_read, status_write) = pipe()?;
    let (output_read, output_write) = pipe()?;
    // The program's stdin: the write end is closed at once, so it reads EOF.
    let (input_read, input_write) = pipe()?;

    // SAFETY: the probe is single-threaded, and the child makes only async-signal-safe calls
    // before execve or _exit.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: we are the forked child; the pointers stay valid because the parent's memory
        // is copied, and nothing here allocates.
        unsafe {
            run_child(
                path.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                input_read.as_raw_fd(),
                output_write.as_raw_fd(),
                status_write.as_raw_fd(),
            )
        }
    }
    drop((status_write, output_write, input_read, input_write));

    let mut exec_errno = Vec::new();
    let read_status = File::from(status_read).read_to_end(&mut exec_errno);
    if let (Ok(_), Ok(bytes)) = (read_status, <[u8; 4]>::try_from(exec_errno.as_slice())) {
        let _ = wait_for(pid);
        return Err(Failure::from(Errno(i32::from_ne_bytes(bytes))).with("stage", "execve"));
    }

    let (output, timed_out) = collect_output(output_read, Instant::now() + EXEC_TIMEOUT);
    if timed_out {
        // The child leads its own process group, so this also ends whatever it started.
        // SAFETY: kill takes no pointers; `pid` is our unreaped child, so it (and the group it
        // leads) names no one else.
        if unsafe { libc::kill(-pid, libc::SIGKILL) } == -1 {
            // SAFETY: as above; setpgid failed in the child, so kill the child alone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let status = wait_for(pid).map_err(|errno| Failure::from(errno).with("stage", "waitpid"))?;
    let mut out = Object::new();
    if libc::WIFEXITED(status) {
        out.insert("exit_code", libc::WEXITSTATUS(status));
    } else if libc::WIFSIGNALED(status) {
        out.insert("signal", libc::WTERMSIG(status));
    }
    out.insert("timed_out", timed_out);
    out.insert("output", String::from_utf8_lossy(&output).into_owned());
    Ok(out)
}

/// Wires up stdin/stdout/stderr and execs; on failure writes errno to `status` and exits 127.
///
/// # Safety
/// Only in the child of fork(), with a valid NUL-terminated `path` and null-terminated `argv`
/// and `envp`.
unsafe fn run_child(
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    input: RawFd,
    output: RawFd,
    status: RawFd,
) -> ! {
    // SAFETY: setpgid, dup2, signal, execve, write and _exit are async-signal-safe; the caller
    // guarantees the pointers. dup2 clears O_CLOEXEC on fds 0-2; every other fd of ours closes
    // at exec.
    unsafe {
        // Its own process group, so a timeout can kill everything it starts. A failure here
        // only weakens that cleanup, so it does not stop the exec.
        libc::setpgid(0, 0);
        if libc::dup2(input, 0) != -1 && libc::dup2(output, 1) != -1 && libc::dup2(output, 2) != -1
        {
            // Rust ignores SIGPIPE; the program should get the default.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::execve(path, argv, envp);
        }
        let errno = (*libc::__errno_location()).to_ne_bytes();
        libc::write(status, errno.as_ptr().cast(), errno.len());
        libc::_exit(127)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads until EOF or the deadline, keeping the first OUTPUT_BYTES. Returns whether the
/// deadline passed.
fn collect_output(pipe: OwnedFd, deadline: Instant) -> (Vec<u8>, bool) {
    let fd = pipe.as_raw_fd();
    let mut file = File::from(pipe);
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match cvt(unsafe { libc::poll(&mut pfd, 1, millis) }) {
            Ok(0) => return (kept, true),
            Ok(_) => {}
            Err(Errno(libc::EINTR)) => continue,
            Err(_) => return (kept, false),
        }
        match file.read(&mut buf) {
            Ok(0) => return (kept, false),
            Ok(n) => {
                let room = OUTPUT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (kept, false),
        }
    }
}
