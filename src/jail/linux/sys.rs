//! Raw syscalls used by the holder and the child. Async-signal-safe: no allocation, no locks,
//! so they may run between `fork` and `_exit` of a possibly multithreaded httpd parent.
//! Each returns the errno on failure.

use std::ffi::{c_int, c_uint, CStr};

pub type Errno = c_int;

fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn check_int(ret: c_int) -> Result<c_int, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

pub fn unshare(flags: c_int) -> Result<(), Errno> {
    // SAFETY: unshare takes only flags.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    check_int(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
    .map(drop)
}

/// A detached copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE)`).
pub fn clone_tree(path: &CStr, recursive: bool) -> Result<c_int, Errno> {
    let flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC
        | if recursive {
            libc::AT_RECURSIVE as c_uint
        } else {
            0
        };
    // SAFETY: `path` is NUL-terminated; open_tree returns a new fd or -1.
    check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })
        .map(|fd| fd as c_int)
}

/// Sets mount attributes (`MOUNT_ATTR_*`) on the tree at `dirfd`/`path`.
pub fn set_mount_attrs(
    dirfd: c_int,
    path: &CStr,
    at_flags: c_int,
    attr_set: u64,
) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated and `attr` is a valid mount_attr whose size is passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            at_flags as c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// Attaches the detached tree `tree` at `target` (resolved in the caller's root, symlinks
/// followed, the last one too: as for any other path inside the prison).
pub fn attach_tree(tree: c_int, target: &CStr) -> Result<(), Errno> {
    // SAFETY: `tree` is an fd from open_tree; both strings are NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_SYMLINKS,
        )
    })
    .map(drop)
}

pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub fn umount_detach(target: &CStr) -> Result<(), Errno> {
    // SAFETY: `target` is NUL-terminated.
    check_int(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is NUL-terminated.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `mkdir`, where an existing entry is fine.
pub fn mkdir_exist_ok(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is NUL-terminated.
    match check_int(unsafe { libc::mkdir(path.as_ptr(), 0o755) }) {
        Err(libc::EEXIST) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty regular file to mount over, where an existing entry is fine.
pub fn touch_exist_ok(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is NUL-terminated; mknod of a regular file needs no device number.
    match check_int(unsafe { libc::mknod(path.as_ptr(), libc::S_IFREG | 0o644, 0) }) {
        Err(libc::EEXIST) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `symlink(target, link)`.
pub fn symlink(target: &CStr, link: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are NUL-terminated.
    check_int(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

/// `rmdir`, for empty directories only; whether it worked does not matter to the caller.
pub fn rmdir_if_empty(path: &CStr) {
    // SAFETY: `path` is NUL-terminated; rmdir never removes a directory with entries.
    unsafe { libc::rmdir(path.as_ptr()) };
}

/// Whether anything (a dangling symlink included) is at `path`.
pub fn exists_nofollow(path: &CStr) -> bool {
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable.
    unsafe { libc::lstat(path.as_ptr(), &mut st) == 0 }
}

/// Whether `path` (following symlinks) is a directory.
pub fn is_dir(path: &CStr) -> Result<bool, Errno> {
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable.
    check_int(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// (st_dev, st_ino) of what `path` shows now (following symlinks): which mount is on top.
pub fn file_id(path: &CStr) -> Result<(u64, u64), Errno> {
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable.
    check_int(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether something real exists at `path`: anything but nothing, an empty regular file or an
/// empty directory (the mount points an earlier start created count as absent).
pub fn has_content(path: &CStr) -> bool {
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable.
    if unsafe { libc::lstat(path.as_ptr(), &mut st) } != 0 {
        return false;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => st.st_size > 0,
        libc::S_IFDIR => !dir_is_empty(path),
        _ => true,
    }
}

fn dir_is_empty(path: &CStr) -> bool {
    // SAFETY: `path` is NUL-terminated; the fd is closed below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    // Entries are counted without allocating: "." and ".." come first in every fs we mount over,
    // and one more name means not empty.
    let mut buf = [0u8; 1024];
    let mut names = 0;
    loop {
        // SAFETY: `buf` is writable for its length; getdents64 fills it with dirent64 records.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut offset = 0usize;
        while offset + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, char name[].
            let reclen = u16::from_ne_bytes([buf[offset + 16], buf[offset + 17]]) as usize;
            let name = &buf[offset + 19..];
            let is_dot = name.starts_with(b".\0") || name.starts_with(b"..\0");
            if !is_dot {
                names += 1;
            }
            if reclen == 0 {
                break;
            }
            offset += reclen;
        }
        if names > 0 {
            break;
        }
    }
    close(fd);
    names == 0
}

pub fn sethostname(name: &CStr) -> Result<(), Errno> {
    let bytes = name.to_bytes();
    // SAFETY: pointer and length describe `name`.
    check_int(unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) }).map(drop)
}

/// Brings `lo` up in the caller's network namespace.
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: socket takes only integers.
    let fd = check_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: an all-zero ifreq is valid; we fill in the name.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS, which read and write it.
    let result = unsafe {
        check_int(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req)).and_then(|_| {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            check_int(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req))
        })
    };
    close(fd);
    result.map(drop)
}

pub fn close(fd: c_int) {
    // SAFETY: closing an fd we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

pub fn write_all(fd: c_int, bytes: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: pointer and length describe the unwritten part of `bytes`.
        let ret = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        match check(ret as libc::c_long) {
            Ok(n) => done += n as usize,
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
pub fn read_full(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: pointer and length describe the unfilled part of `buf`.
        let ret = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        match check(ret as libc::c_long) {
            Ok(0) => break,
            Ok(n) => done += n as usize,
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> Result<(c_int, c_int), Errno> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit ends the process without running atexit handlers or destructors, which is
    // what a forked helper of a multithreaded parent must do.
    unsafe { libc::_exit(code) }
}
