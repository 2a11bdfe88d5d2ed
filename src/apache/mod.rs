//! The only code that touches httpd and APR: the exported `prison_module`, its directive
//! table and its hooks. Nothing outside this directory calls into httpd.

mod carry;
mod directives;
mod guard;
mod hooks;
pub(crate) mod log;
mod server_config;
mod sys;

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_void};
use std::ptr;

/// httpd writes `module_index`, `next` and `dynamic_load_handle` into the module struct, so it
/// must live in writable memory: `UnsafeCell` puts it in `.data` (a plain static lands in
/// `.data.rel.ro` and httpd segfaults on load).
#[repr(transparent)]
pub struct ModuleCell(UnsafeCell<sys::module>);

// SAFETY: httpd reads and writes the struct only from its single configuration thread, before
// any of our code runs concurrently; we only read module_index.
unsafe impl Sync for ModuleCell {}

/// `LoadModule prison_module …/mod_prison.so` looks up this symbol, the only one we export.
#[unsafe(no_mangle)]
pub static prison_module: ModuleCell = ModuleCell(UnsafeCell::new(sys::module {
    // STANDARD20_MODULE_STUFF, written out:
    version: sys::MODULE_MAGIC_NUMBER_MAJOR,
    minor_version: sys::MODULE_MAGIC_NUMBER_MINOR,
    module_index: -1,
    name: c"mod_prison.c".as_ptr(),
    dynamic_load_handle: ptr::null_mut(),
    next: ptr::null_mut(),
    magic: sys::MODULE_MAGIC_COOKIE as std::ffi::c_ulong,
    rewrite_args: None,
    create_dir_config: None,
    merge_dir_config: None,
    create_server_config: Some(create_server_config),
    merge_server_config: None,
    cmds: COMMANDS.0.as_ptr(),
    register_hooks: Some(register_hooks),
    flags: 0,
}));

pub(crate) use prison_module as PRISON_MODULE;

struct Commands([sys::command_rec; 10]);
// SAFETY: the table is immutable and holds only pointers to static C strings and functions.
unsafe impl Sync for Commands {}

const fn take1(
    name: &'static std::ffi::CStr,
    f: unsafe extern "C" fn(*mut sys::cmd_parms, *mut c_void, *const c_char) -> *const c_char,
    usage: &'static std::ffi::CStr,
) -> sys::command_rec {
    sys::command_rec {
        name: name.as_ptr(),
        func: sys::cmd_func { take1: Some(f) },
        cmd_data: ptr::null_mut(),
        req_override: sys::RSRC_CONF as _,
        args_how: sys::cmd_how_TAKE1,
        errmsg: usage.as_ptr(),
    }
}

const fn take2(
    name: &'static std::ffi::CStr,
    f: unsafe extern "C" fn(
        *mut sys::cmd_parms,
        *mut c_void,
        *const c_char,
        *const c_char,
    ) -> *const c_char,
    how: sys::cmd_how,
    usage: &'static std::ffi::CStr,
) -> sys::command_rec {
    sys::command_rec {
        name: name.as_ptr(),
        func: sys::cmd_func { take2: Some(f) },
        cmd_data: ptr::null_mut(),
        req_override: sys::RSRC_CONF as _,
        args_how: how,
        errmsg: usage.as_ptr(),
    }
}

static COMMANDS: Commands = Commands([
    take1(
        c"PrisonDir",
        directives::prison_dir,
        c"PrisonDir <absolute path>: the directory that becomes the prison's /",
    ),
    take2(
        c"PrisonIP",
        directives::prison_ip,
        sys::cmd_how_TAKE12,
        c"PrisonIP <address> [<address>]: the prison's IPv4 and/or IPv6 address",
    ),
    take1(
        c"PrisonSecurity",
        directives::prison_security,
        c"PrisonSecurity None|ALL|IPC",
    ),
    take1(
        c"PrisonCPU",
        directives::prison_cpu,
        c"PrisonCPU <list>: e.g. 1, 1,2,6, 8-10 or 0,2-3",
    ),
    take2(
        c"PrisonMemory",
        directives::prison_memory,
        sys::cmd_how_TAKE2,
        c"PrisonMemory <report> <deny>: bytes or k/M/G/T, 0 for none",
    ),
    take1(
        c"PrisonProcesses",
        directives::prison_processes,
        c"PrisonProcesses <n>: the most processes and threads in the prison, 0 for none",
    ),
    take1(
        c"PrisonName",
        directives::prison_name,
        c"PrisonName <name>: letters, digits, _ and -",
    ),
    take1(
        c"PrisonTmp",
        directives::prison_tmp,
        c"PrisonTmp <size>|off: the size of the prison's private /tmp (a tmpfs), or off",
    ),
    sys::command_rec {
        name: c"PrisonBind".as_ptr(),
        func: sys::cmd_func {
            take3: Some(directives::prison_bind),
        },
        cmd_data: ptr::null_mut(),
        req_override: sys::RSRC_CONF as _,
        args_how: sys::cmd_how_TAKE123,
        errmsg:
            c"PrisonBind <host path> [<path inside>] [ro|rw]: show a host path inside the prison"
                .as_ptr(),
    },
    // SAFETY: all-zero is the table terminator httpd expects (C `{NULL}`): null pointers and a
    // None function in the union.
    unsafe { std::mem::zeroed() },
]);

unsafe extern "C" fn create_server_config(
    pool: *mut sys::apr_pool_t,
    _s: *mut sys::server_rec,
) -> *mut c_void {
    guard::ffi_guard(ptr::null_mut(), || server_config::create(pool))
}

struct HookNames([*const c_char; 2]);
// SAFETY: immutable array of pointers to static C strings.
unsafe impl Sync for HookNames {}

/// Our post_config must run before mod_cgid's, which forks the cgid daemon.
static BEFORE_CGID: HookNames = HookNames([c"mod_cgid.c".as_ptr(), ptr::null()]);

unsafe extern "C" fn register_hooks(_pool: *mut sys::apr_pool_t) {
    guard::ffi_guard((), || {
        let really_first = sys::APR_HOOK_REALLY_FIRST;
        // SAFETY: registering static functions and static, NUL-terminated name lists with httpd,
        // from its register_hooks callback as the API requires.
        unsafe {
            sys::ap_hook_check_config(
                Some(hooks::check_config),
                ptr::null(),
                ptr::null(),
                sys::APR_HOOK_MIDDLE,
            );
            sys::ap_hook_post_config(
                Some(hooks::post_config),
                ptr::null(),
                BEFORE_CGID.0.as_ptr(),
                really_first,
            );
            sys::ap_hook_drop_privileges(
                Some(hooks::attach),
                ptr::null(),
                ptr::null(),
                really_first,
            );
            sys::ap_hook_drop_privileges(
                Some(hooks::verify_attached),
                ptr::null(),
                ptr::null(),
                sys::APR_HOOK_REALLY_LAST,
            );
            sys::ap_hook_monitor(
                Some(hooks::monitor),
                ptr::null(),
                ptr::null(),
                sys::APR_HOOK_MIDDLE,
            );
            sys::ap_hook_child_init(
                Some(hooks::child_init),
                ptr::null(),
                ptr::null(),
                sys::APR_HOOK_MIDDLE,
            );
        }
    })
}
