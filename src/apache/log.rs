//! Logging through `ap_log_error_` under the module's own tag, so `LogLevel prison:debug` works.

use std::ffi::CString;
use std::ptr;

use super::sys;
use super::PRISON_MODULE;

#[derive(Debug, Clone, Copy)]
pub enum Level {
    Emerg = 0,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Logs `msg` for server `s` (null: the main server). The message is passed as the argument of
/// a `"%s"` format, never as the format itself.
pub fn log(s: *const sys::server_rec, level: Level, msg: &str) {
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    let s = if s.is_null() { ptr::null() } else { s };
    // SAFETY: the module struct is valid for the life of the DSO; httpd wrote module_index when
    // it loaded us and nothing writes it concurrently (httpd's config and hooks are serial here).
    let index = unsafe { (*PRISON_MODULE.0.get()).module_index };
    // SAFETY: all strings are NUL-terminated and live across the call; "%s" consumes exactly the
    // one vararg passed; `s` is null or a server_rec httpd gave us.
    unsafe {
        sys::ap_log_error_(
            c"mod_prison.rs".as_ptr(),
            line!() as i32,
            index,
            level as i32,
            0,
            s,
            c"%s".as_ptr(),
            msg.as_ptr(),
        );
    }
}

macro_rules! log_at {
    ($s:expr, $level:ident, $($arg:tt)*) => {
        $crate::apache::log::log($s, $crate::apache::log::Level::$level, &format!($($arg)*))
    };
}
pub(crate) use log_at;
