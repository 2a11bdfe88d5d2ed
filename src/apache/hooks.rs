//! The hook trampolines. Each returns OK/DECLINED or a *positive* error: -1 is DECLINED in
//! httpd's RUN_ALL hooks and would let a child that failed to be jailed go on serving.

use std::ffi::{c_char, c_int, CStr};
use std::path::PathBuf;
use std::ptr::NonNull;

use crate::config::HostConfig;
use crate::jail::{Identity, Prepared};

use super::guard::ffi_guard;
use super::log::log_at;
use super::{carry, server_config, sys};

/// Fail-closed code for a hook that could not do its job (any value other than OK/DECLINED).
const FAIL: c_int = 500;
const OK: c_int = sys::OK as c_int;
const DECLINED: c_int = sys::DECLINED as c_int;
/// httpd's APEXIT_CHILDFATAL: the parent stops instead of respawning children.
const APEXIT_CHILDFATAL: c_int = 0xf;

fn main_state() -> c_int {
    // SAFETY: ap_state_query only reads httpd's global state.
    unsafe { sys::ap_state_query(sys::AP_SQ_MAIN_STATE as c_int) }
}

/// Once the whole configuration is read (also under `-t`): resolve the prison or refuse it.
pub unsafe extern "C" fn check_config(
    pconf: *mut sys::apr_pool_t,
    _plog: *mut sys::apr_pool_t,
    _ptemp: *mut sys::apr_pool_t,
    s: *mut sys::server_rec,
) -> c_int {
    ffi_guard(FAIL, || {
        // SAFETY: `s` is the live main server for this configuration.
        let Some(record) = (unsafe { server_config::of(s) }) else {
            return DECLINED;
        };
        // SAFETY: `s` and `pconf` are live; the globals read are httpd's exported, initialised
        // configuration.
        let host = unsafe { host_config(pconf, s) };
        let mut record = record.borrow_mut();
        match record.directives.finish(&host) {
            Ok(prison) => {
                let verdict = match &prison {
                    Some(prison) if run_mode() == sys::AP_SQ_RM_CONFIG_TEST as c_int => {
                        dry_run(s, prison)
                    }
                    _ => OK,
                };
                record.prison = prison;
                verdict
            }
            Err(e) => {
                log_at!(s, Emerg, "mod_prison: configuration refused: {e}");
                FAIL
            }
        }
    })
}

fn run_mode() -> c_int {
    // SAFETY: ap_state_query only reads httpd's global state.
    unsafe { sys::ap_state_query(sys::AP_SQ_RUN_MODE as c_int) }
}

/// `apachectl -t` (and so Debian's `apache2ctl graceful`, which runs it first): build the
/// prison once in a throwaway process, so that what would fail at start fails here, with the
/// directive's line. Needs root, like the start; without it the directives alone were checked.
fn dry_run(s: *mut sys::server_rec, prison: &crate::config::Prison) -> c_int {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        log_at!(
            s,
            Warning,
            "mod_prison: {prison}: not root, so the dry run of the prison was skipped; only the \
             directives were checked (run apachectl -t as root to check that it can be built)"
        );
        return OK;
    }
    // SAFETY: ap_unixd_config is httpd's exported configuration, set by User/Group.
    let (user, uid, gid) = unsafe {
        (
            c_string(sys::ap_unixd_config.user_name),
            sys::ap_unixd_config.user_id,
            sys::ap_unixd_config.group_id,
        )
    };
    match Identity::resolve(&user, uid, gid).and_then(|_| Prepared::dry_run(prison)) {
        Ok(checked) => {
            log_at!(s, Notice, "mod_prison: {prison}: dry run passed: {checked}");
            OK
        }
        Err(e) => {
            log_at!(
                s,
                Emerg,
                "mod_prison: configuration refused: the dry run of prison {} failed, a start \
                 would fail the same way: {e}",
                prison.name
            );
            FAIL
        }
    }
}

/// What the rest of httpd's configuration says that the prison depends on.
///
/// # Safety
/// `pconf` and `s` must be the live config pool and main server.
unsafe fn host_config(pconf: *mut sys::apr_pool_t, s: *mut sys::server_rec) -> HostConfig {
    // SAFETY: per the contract; ap_runtime_dir_relative returns a pool string or null.
    let runtime_dir = unsafe { opt_c_string(sys::ap_runtime_dir_relative(pconf, c"".as_ptr())) }
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir());
    HostConfig {
        // SAFETY: `s` is live; server_hostname is null or a pool string.
        server_name: unsafe { c_string((*s).server_hostname) },
        // SAFETY: ap_unixd_config is httpd's exported, fully initialised configuration.
        chroot_dir: unsafe { opt_c_string(sys::ap_unixd_config.chroot_dir) },
        // SAFETY: ap_conftree is the parsed configuration tree, alive while pconf is.
        mutexes: unsafe { directive_args(sys::ap_conftree, "Mutex") },
        runtime_dir,
        // SAFETY: as above.
        privileged_children: unsafe { privileged_children(sys::ap_conftree) },
    }
}

/// suEXEC (a setuid-root helper, powerless under no_new_privs) and modules that keep children
/// root to switch users per request (mpm-itk, mod_ruid2), as loaded or configured. (LoadModule
/// runs while the configuration is read and is not kept in the tree, so ask httpd.)
///
/// # Safety
/// `tree` is null or the live configuration tree.
unsafe fn privileged_children(tree: *const sys::ap_directive_t) -> Vec<String> {
    const MODULES: [(&std::ffi::CStr, &str); 3] = [
        (c"mod_suexec.c", "mod_suexec"),
        (c"mpm_itk.c", "mpm-itk"),
        (c"mod_ruid2.c", "mod_ruid2"),
    ];
    let mut found: Vec<String> = MODULES
        .iter()
        // SAFETY: a NUL-terminated name; httpd only searches its list of loaded modules.
        .filter(|(name, _)| !unsafe { sys::ap_find_linked_module(name.as_ptr()) }.is_null())
        .map(|(_, what)| format!("{what} (loaded)"))
        .collect();
    // SAFETY: per the contract.
    for args in unsafe { directive_args(tree, "SuexecUserGroup") } {
        found.push(format!("suEXEC (SuexecUserGroup {args})"));
    }
    found
}

/// The arguments of every directive named `name` anywhere in the tree.
///
/// # Safety
/// `node` is null or a live `ap_directive_t` tree.
unsafe fn directive_args(node: *const sys::ap_directive_t, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut node = node;
    while !node.is_null() {
        // SAFETY: per the contract every node and its strings are live.
        unsafe {
            if c_string((*node).directive).eq_ignore_ascii_case(name) {
                found.push(c_string((*node).args));
            }
            found.extend(directive_args((*node).first_child, name));
            node = (*node).next;
        }
    }
    found
}

/// In the parent: pass 1 (before daemonizing) does nothing; later passes build the prison.
pub unsafe extern "C" fn post_config(
    _pconf: *mut sys::apr_pool_t,
    _plog: *mut sys::apr_pool_t,
    _ptemp: *mut sys::apr_pool_t,
    s: *mut sys::server_rec,
) -> c_int {
    ffi_guard(FAIL, || {
        if main_state() == sys::AP_SQ_MS_CREATE_PRE_CONFIG as c_int {
            return OK;
        }
        // SAFETY: `s` is the live main server.
        let Some(record) = (unsafe { server_config::of(s) }) else {
            return DECLINED;
        };
        let mut record = record.borrow_mut();
        // SAFETY: `s` is the live main server.
        record.process_pool = unsafe { carry::process_pool(s) };
        // What the previous generation left for this one (None at first start), taken even
        // when this configuration has no prison, so that it is never left behind.
        let previous = match record.process_pool {
            // SAFETY: httpd's process pool, in the parent's single thread (post_config).
            Some(pool) => unsafe { carry::take(pool) },
            None => None,
        };
        let Some(prison) = record.prison.clone() else {
            if let Some(previous) = previous {
                Prepared::retire(&previous);
            }
            log_at!(s, Info, "mod_prison: no PrisonDir, children are not jailed");
            return OK;
        };
        // SAFETY: ap_unixd_config is httpd's exported configuration, set by User/Group.
        let (user, uid, gid) = unsafe {
            (
                c_string(sys::ap_unixd_config.user_name),
                sys::ap_unixd_config.user_id,
                sys::ap_unixd_config.group_id,
            )
        };
        let started = std::time::Instant::now();
        match Identity::resolve(&user, uid, gid)
            .and_then(|identity| Prepared::build(&prison, &identity, previous.as_deref()))
        {
            Ok(prepared) => {
                log_at!(
                    s,
                    Notice,
                    "mod_prison: {prison}: ready, children run as {user} ({uid}:{gid}); {}; built in {} us",
                    prepared.security_summary(),
                    started.elapsed().as_micros()
                );
                record.prepared = Some(prepared);
                OK
            }
            Err(e) => {
                log_at!(
                    s,
                    Emerg,
                    "mod_prison: prison {} cannot be built, httpd will not start: {e}",
                    prison.name
                );
                FAIL
            }
        }
    })
}

/// In every child and the cgid daemon, as root and single-threaded, before mod_unixd.
pub unsafe extern "C" fn attach(_pool: *mut sys::apr_pool_t, s: *mut sys::server_rec) -> c_int {
    ffi_guard(FAIL, || {
        // SAFETY: `s` is the live main server.
        let Some(record) = (unsafe { server_config::of(s) }) else {
            return DECLINED;
        };
        let record = record.borrow();
        let Some(prison) = &record.prison else {
            return DECLINED;
        };
        let pid = std::process::id();
        let Some(prepared) = &record.prepared else {
            log_at!(
                s,
                Emerg,
                "mod_prison: pid {pid}: prison {} was never built; this process exits",
                prison.name
            );
            return FAIL;
        };
        let started = std::time::Instant::now();
        match prepared.attach() {
            Ok(()) => {
                log_at!(
                    s,
                    Debug,
                    "mod_prison: pid {pid}: attached to prison {} in {} us",
                    prison.name,
                    started.elapsed().as_micros()
                );
                OK
            }
            Err(e) => {
                log_at!(
                    s,
                    Emerg,
                    "mod_prison: pid {pid}: attaching to prison {} failed, this process exits: {e}",
                    prison.name
                );
                FAIL
            }
        }
    })
}

/// After every other drop_privileges hook: assert the process is jailed and not root.
pub unsafe extern "C" fn verify_attached(
    _pool: *mut sys::apr_pool_t,
    s: *mut sys::server_rec,
) -> c_int {
    ffi_guard(FAIL, || match verify(s) {
        Some(Err(e)) => {
            log_at!(
                s,
                Emerg,
                "mod_prison: pid {}: not properly jailed, this process exits: {e}",
                std::process::id()
            );
            FAIL
        }
        Some(Ok(())) => OK,
        None => DECLINED,
    })
}

/// child_init returns void and cannot fail a child, so a child that is not jailed exits here.
pub unsafe extern "C" fn child_init(_pool: *mut sys::apr_pool_t, s: *mut sys::server_rec) {
    ffi_guard((), || {
        if let Some(Err(e)) = verify(s) {
            log_at!(
                s,
                Emerg,
                "mod_prison: pid {}: not properly jailed at child_init, exiting: {e}",
                std::process::id()
            );
            // SAFETY: ending this child at once; it must never serve.
            unsafe { libc::_exit(APEXIT_CHILDFATAL) };
        }
    })
}

/// `None`: no prison configured.
fn verify(s: *mut sys::server_rec) -> Option<Result<(), crate::jail::SetupError>> {
    // SAFETY: `s` is the live main server.
    let record = unsafe { server_config::of(s) }?.borrow();
    record.prison.as_ref()?;
    Some(match &record.prepared {
        Some(prepared) => prepared.verify(),
        None => Err(crate::jail::SetupError::check(
            "verifying the prison",
            "it was never built",
        )),
    })
}

/// In the parent, about every ten seconds (httpd's monitor hook): log the prison's resource
/// events (memory report crossings, OOM kills, refused forks).
pub unsafe extern "C" fn monitor(_pool: *mut sys::apr_pool_t, s: *mut sys::server_rec) -> c_int {
    ffi_guard(DECLINED, || {
        // SAFETY: `s` is the live main server.
        let Some(record) = (unsafe { server_config::of(s) }) else {
            return DECLINED;
        };
        let mut record = record.borrow_mut();
        if let Some(prepared) = &mut record.prepared {
            for event in prepared.monitor() {
                log_at!(s, Warning, "mod_prison: {event}");
            }
        }
        DECLINED
    })
}

/// The config pool of a generation is being cleared: at exit, tear the prison down; at a
/// restart, release the parent's handles (old children keep their prison until they exit) and
/// leave the backend's carry in the process pool for the next generation's post_config, since
/// httpd unloads this module right after (nothing is stored at exit).
pub fn end_of_generation(prepared: Prepared, process_pool: Option<NonNull<sys::apr_pool_t>>) {
    if main_state() == sys::AP_SQ_MS_EXITING as c_int {
        for problem in prepared.teardown() {
            log_at!(std::ptr::null(), Warning, "mod_prison: at exit: {problem}");
        }
        return;
    }
    let Some(text) = prepared.release() else {
        return;
    };
    let stored = match process_pool {
        // SAFETY: the process pool recorded by post_config, which outlives every generation;
        // pconf cleanups run in the parent's single thread.
        Some(pool) => unsafe { carry::store(pool, &text) },
        None => Err("no process pool was recorded".to_owned()),
    };
    if let Err(e) = stored {
        log_at!(
            std::ptr::null(),
            Warning,
            "mod_prison: the prison cannot be handed to the next generation ({e}); it stays \
             until httpd exits"
        );
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn opt_c_string(p: *const c_char) -> Option<String> {
    // SAFETY: per the contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn c_string(p: *const c_char) -> String {
    // SAFETY: per the contract.
    unsafe { opt_c_string(p) }.unwrap_or_default()
}
