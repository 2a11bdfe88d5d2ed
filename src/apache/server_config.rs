//! The module's per-server configuration record, owned by httpd's config pool.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr::NonNull;

use crate::config::{Directives, Prison};
use crate::jail::Prepared;

use super::sys;
use super::PRISON_MODULE;

/// What httpd keeps for us per server. Only the main server's matters: every directive is
/// GLOBAL_ONLY.
#[derive(Debug, Default)]
pub struct ServerConfig {
    pub directives: Directives,
    /// Set by check_config once the whole configuration is read; `None` = no prison.
    pub prison: Option<Prison>,
    /// Built by post_config in the parent (pass 2 and every restart); inherited by children.
    pub prepared: Option<Prepared>,
    /// httpd's process pool (`s->process->pool`), recorded by post_config: where the cleanup
    /// at the end of this generation leaves the carry for the next one.
    pub process_pool: Option<NonNull<sys::apr_pool_t>>,
}

/// Allocates a record whose lifetime is the pool's: a cleanup on `pool` frees it.
pub fn create(pool: *mut sys::apr_pool_t) -> *mut c_void {
    let record = Box::into_raw(Box::new(RefCell::new(ServerConfig::default())));
    // SAFETY: `record` is a live Box pointer that only `drop_record` frees, when the pool is
    // cleared or destroyed; the pool outlives every use (httpd reads server configs only while
    // its config pool lives). The cleanup is registered after mod_so's dlclose cleanup, so LIFO
    // order runs it while our code is still mapped.
    unsafe {
        sys::apr_pool_cleanup_register(
            pool,
            record.cast(),
            Some(drop_record),
            Some(sys::apr_pool_cleanup_null),
        );
    }
    record.cast()
}

unsafe extern "C" fn drop_record(record: *mut c_void) -> sys::apr_status_t {
    super::guard::ffi_guard(0, || {
        // SAFETY: `record` came from Box::into_raw in `create`, and this cleanup runs once.
        let record = unsafe { Box::from_raw(record.cast::<RefCell<ServerConfig>>()) }.into_inner();
        if let Some(prepared) = record.prepared {
            super::hooks::end_of_generation(prepared, record.process_pool);
        }
        0
    })
}

/// The record of server `s` (C `ap_get_module_config(s->module_config, &prison_module)`).
///
/// # Safety
/// `s` must be a live server_rec of the configuration our module was loaded into.
pub unsafe fn of<'a>(s: *const sys::server_rec) -> Option<&'a RefCell<ServerConfig>> {
    // SAFETY: per the caller's contract `s` is live; module_index was set by httpd at load time.
    unsafe {
        let index = usize::try_from((*PRISON_MODULE.0.get()).module_index).ok()?;
        let configs = (*s).module_config.cast::<*mut c_void>();
        if configs.is_null() {
            return None;
        }
        let record = *configs.add(index);
        record.cast::<RefCell<ServerConfig>>().as_ref()
    }
}
