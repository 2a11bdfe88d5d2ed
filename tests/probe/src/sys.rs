//! Syscall results and how a check's outcome is reported.
//!
//! Every check returns an [`Outcome`]. [`report`] turns it into `{"ok":true, ...}` or
//! `{"ok":false,"errno":N,"error":"ENAME: text", ...}`.

use crate::json::{Json, Object};

/// An errno value from a failed syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's errno, right after a failed call.
    pub fn last() -> Self {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The symbolic name ("ENOENT") for the common values.
    pub fn name(self) -> Option<&'static str> {
        ERRNO_NAMES
            .iter()
            .find(|(n, _)| *n == self.0)
            .map(|(_, name)| *name)
    }

    /// "ENOENT: No such file or directory", or "errno 200: Unknown error 200".
    pub fn describe(self) -> String {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        let suffix = format!(" (os error {})", self.0);
        let text = text.strip_suffix(&suffix).unwrap_or(&text);
        match self.name() {
            Some(name) => format!("{name}: {text}"),
            None => format!("errno {}: {text}", self.0),
        }
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        // std's I/O on files and directories always carries the OS error.
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Return values of syscalls that signal failure with -1 and errno.
pub trait SyscallReturn: Copy + PartialEq {
    const FAILED: Self;
}

impl SyscallReturn for i32 {
    const FAILED: Self = -1;
}

impl SyscallReturn for i64 {
    const FAILED: Self = -1;
}

impl SyscallReturn for isize {
    const FAILED: Self = -1;
}

/// Turns a syscall's -1 into the errno it set.
pub fn cvt<T: SyscallReturn>(ret: T) -> Result<T, Errno> {
    if ret == T::FAILED {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Why a check failed, with whatever else it learned (e.g. the local address of a refused
/// connection).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub errno: Errno,
    pub detail: Option<String>,
    pub extra: Object,
}

impl Failure {
    /// A parameter the probe could not use; reported as EINVAL with the reason.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Failure {
            errno: Errno(libc::EINVAL),
            detail: Some(detail.into()),
            extra: Object::new(),
        }
    }

    /// Adds a field to the failure report.
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Self {
        self.extra.insert(key, value);
        self
    }

    fn into_json(self) -> Json {
        let mut out = Object::new()
            .with("ok", false)
            .with("errno", self.errno.0)
            .with("error", self.errno.describe());
        if let Some(detail) = self.detail {
            out.insert("detail", detail);
        }
        out.extend(self.extra);
        out.into()
    }
}

impl From<Errno> for Failure {
    fn from(errno: Errno) -> Self {
        Failure {
            errno,
            detail: None,
            extra: Object::new(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Errno::from(e).into()
    }
}

/// The result of one check: the fields to report on success, or why it failed.
pub type Outcome = Result<Object, Failure>;

/// `{"ok":true, ...fields}` or the failure's report.
pub fn report(outcome: Outcome) -> Json {
    match outcome {
        Ok(fields) => {
            let mut out = Object::new().with("ok", true);
            out.extend(fields);
            out.into()
        }
        Err(failure) => failure.into_json(),
    }
}

const ERRNO_NAMES: &[(i32, &str)] = &[
    (libc::EPERM, "EPERM"),
    (libc::ENOENT, "ENOENT"),
    (libc::ESRCH, "ESRCH"),
    (libc::EINTR, "EINTR"),
    (libc::EIO, "EIO"),
    (libc::ENXIO, "ENXIO"),
    (libc::E2BIG, "E2BIG"),
    (libc::ENOEXEC, "ENOEXEC"),
    (libc::EBADF, "EBADF"),
    (libc::ECHILD, "ECHILD"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::EACCES, "EACCES"),
    (libc::EFAULT, "EFAULT"),
    (libc::EBUSY, "EBUSY"),
    (libc::EEXIST, "EEXIST"),
    (libc::EXDEV, "EXDEV"),
    (libc::ENODEV, "ENODEV"),
    (libc::ENOTDIR, "ENOTDIR"),
    (libc::EISDIR, "EISDIR"),
    (libc::EINVAL, "EINVAL"),
    (libc::ENFILE, "ENFILE"),
    (libc::EMFILE, "EMFILE"),
    (libc::ENOTTY, "ENOTTY"),
    (libc::ETXTBSY, "ETXTBSY"),
    (libc::EFBIG, "EFBIG"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::ESPIPE, "ESPIPE"),
    (libc::EROFS, "EROFS"),
    (libc::EMLINK, "EMLINK"),
    (libc::EPIPE, "EPIPE"),
    (libc::ERANGE, "ERANGE"),
    (libc::EDEADLK, "EDEADLK"),
    (libc::ENAMETOOLONG, "ENAMETOOLONG"),
    (libc::ENOSYS, "ENOSYS"),
    (libc::ENOTEMPTY, "ENOTEMPTY"),
    (libc::ELOOP, "ELOOP"),
    (libc::ENODATA, "ENODATA"),
    (libc::ENOTSOCK, "ENOTSOCK"),
    (libc::EDESTADDRREQ, "EDESTADDRREQ"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::EPROTOTYPE, "EPROTOTYPE"),
    (libc::ENOPROTOOPT, "ENOPROTOOPT"),
    (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
    (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EPFNOSUPPORT, "EPFNOSUPPORT"),
    (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
    (libc::EADDRINUSE, "EADDRINUSE"),
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::ENETRESET, "ENETRESET"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::EISCONN, "EISCONN"),
    (libc::ENOTCONN, "ENOTCONN"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::EHOSTDOWN, "EHOSTDOWN"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::EALREADY, "EALREADY"),
    (libc::EINPROGRESS, "EINPROGRESS"),
    (libc::ESTALE, "ESTALE"),
    (libc::EDQUOT, "EDQUOT"),
    (libc::ECANCELED, "ECANCELED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_symbolic() {
        assert_eq!(Errno(libc::ENOENT).name(), Some("ENOENT"));
        assert_eq!(Errno(libc::ENETUNREACH).name(), Some("ENETUNREACH"));
        assert_eq!(
            Errno(libc::ENOENT).describe(),
            "ENOENT: No such file or directory"
        );
        assert!(Errno(4000).describe().starts_with("errno 4000: "));
    }

    #[test]
    fn errno_table_has_no_duplicates() {
        for (i, (n, _)) in ERRNO_NAMES.iter().enumerate() {
            assert!(ERRNO_NAMES[i + 1..].iter().all(|(m, _)| m != n), "{n}");
        }
    }

    #[test]
    fn reports_have_the_documented_shape() {
        let ok = report(Ok(Object::new().with("bytes", 3u32)));
        assert_eq!(ok.render(), r#"{"ok":true,"bytes":3}"#);
        let failed = report(Err(
            Failure::from(Errno(libc::EACCES)).with("local", "1.2.3.4:5")
        ));
        assert_eq!(
            failed.render(),
            r#"{"ok":false,"errno":13,"error":"EACCES: Permission denied","local":"1.2.3.4:5"}"#
        );
        let invalid = report(Err(Failure::invalid("sleep: not a number")));
        assert_eq!(
            invalid.render(),
            r#"{"ok":false,"errno":22,"error":"EINVAL: Invalid argument","detail":"sleep: not a number"}"#
        );
    }
}
