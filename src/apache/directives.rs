//! The directive handlers: C strings in, `config::Directives` setters, error text out.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use crate::config::{ConfigError, Directives};
use crate::host;

use super::guard::ffi_guard;
use super::{server_config, sys};

/// Returned if a handler panicked; httpd prints it as a syntax error on the directive's line.
const PANICKED: *const c_char = c"mod_prison: internal error while parsing this directive".as_ptr();

/// Common body of every handler: GLOBAL_ONLY check, argument decoding, the setter, and the
/// error string allocated in the command's pool.
unsafe fn handle(
    cmd: *mut sys::cmd_parms,
    args: &[*const c_char],
    set: impl FnOnce(&mut Directives, &[&str]) -> Result<(), String>,
) -> *const c_char {
    ffi_guard(PANICKED, || {
        // SAFETY: httpd passes a live cmd_parms for the duration of the call.
        let context_error = unsafe { sys::ap_check_cmd_context(cmd, sys::GLOBAL_ONLY as _) };
        if !context_error.is_null() {
            return context_error;
        }
        let mut words = Vec::with_capacity(args.len());
        for &arg in args.iter().filter(|a| !a.is_null()) {
            // SAFETY: httpd's arguments are NUL-terminated strings from the config pool.
            match unsafe { CStr::from_ptr(arg) }.to_str() {
                Ok(word) => words.push(word),
                Err(_) => return error(cmd, "mod_prison: argument is not valid UTF-8".to_owned()),
            }
        }
        // SAFETY: cmd->server is the server being configured.
        let Some(record) = (unsafe { server_config::of((*cmd).server) }) else {
            return error(cmd, "mod_prison: module configuration missing".to_owned());
        };
        let mut record = record.borrow_mut();
        match set(&mut record.directives, &words) {
            Ok(()) => {
                // SAFETY: httpd passes a live cmd_parms for the duration of the call.
                if let Some((name, location)) = unsafe { origin(cmd) } {
                    record.directives.origins.record(&name, location);
                }
                ptr::null()
            }
            Err(msg) => error(cmd, msg),
        }
    })
}

/// The directive being read and where: (`PrisonBind`, `line 12 of /etc/apache2/apache2.conf`).
///
/// # Safety
/// `cmd` is the live cmd_parms of the current directive.
unsafe fn origin(cmd: *const sys::cmd_parms) -> Option<(String, String)> {
    // SAFETY: per the contract; httpd sets `cmd` (the command_rec) and `directive` (the node
    // being processed, whose strings live in the config pool) before calling a handler.
    unsafe {
        let command = (*cmd).cmd;
        let directive = (*cmd).directive;
        if command.is_null() || directive.is_null() || (*command).name.is_null() {
            return None;
        }
        let name = CStr::from_ptr((*command).name)
            .to_string_lossy()
            .into_owned();
        let file = (*directive).filename;
        let location = if file.is_null() {
            format!("line {}", (*directive).line_num)
        } else {
            format!(
                "line {} of {}",
                (*directive).line_num,
                CStr::from_ptr(file).to_string_lossy()
            )
        };
        Some((name, location))
    }
}

fn error(cmd: *mut sys::cmd_parms, msg: String) -> *const c_char {
    let msg = std::ffi::CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: cmd->pool is the live config pool; apr_pstrdup copies the string into it, so the
    // result outlives this call as httpd requires.
    unsafe { sys::apr_pstrdup((*cmd).pool, msg.as_ptr()) }
}

fn text(result: Result<(), ConfigError>) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}

pub unsafe extern "C" fn prison_dir(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call, same contract.
    unsafe { handle(cmd, &[a], |d, w| text(d.prison_dir(w[0]))) }
}

pub unsafe extern "C" fn prison_ip(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
    b: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call (TAKE12: `b` may be null, which `handle` skips).
    unsafe { handle(cmd, &[a, b], |d, w| text(d.prison_ip(w))) }
}

pub unsafe extern "C" fn prison_security(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call, same contract.
    unsafe { handle(cmd, &[a], |d, w| text(d.prison_security(w[0]))) }
}

pub unsafe extern "C" fn prison_cpu(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call, same contract.
    unsafe {
        handle(cmd, &[a], |d, w| {
            let online = host::online_cpus()
                .map_err(|e| format!("PrisonCPU: cannot list this machine's CPUs: {e}"))?;
            text(d.prison_cpu(w[0], &online))
        })
    }
}

pub unsafe extern "C" fn prison_memory(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
    b: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call (TAKE2: both present).
    unsafe { handle(cmd, &[a, b], |d, w| text(d.prison_memory(w[0], w[1]))) }
}

pub unsafe extern "C" fn prison_processes(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call, same contract.
    unsafe { handle(cmd, &[a], |d, w| text(d.prison_processes(w[0]))) }
}

pub unsafe extern "C" fn prison_name(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call, same contract.
    unsafe { handle(cmd, &[a], |d, w| text(d.prison_name(w[0]))) }
}

pub unsafe extern "C" fn prison_bind(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
    b: *const c_char,
    c: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call (TAKE123: `b` and `c` may be null, which `handle` skips).
    unsafe { handle(cmd, &[a, b, c], |d, w| text(d.prison_bind(w))) }
}

pub unsafe extern "C" fn prison_tmp(
    cmd: *mut sys::cmd_parms,
    _: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: forwarded from httpd's call, same contract.
    unsafe { handle(cmd, &[a], |d, w| text(d.prison_tmp(w[0]))) }
}
