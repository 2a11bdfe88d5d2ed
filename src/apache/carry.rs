//! The carry between generations (see `jail` "Carry across a restart"), kept in the process
//! pool: httpd clears pconf and unloads this module at every restart, but `s->process->pool`
//! lives until httpd exits. Only plain bytes are stored there, copied into that pool, under a
//! key APR copies too; no cleanup and no pointer into this module's code or memory, which may
//! be unmapped by the time the next generation reads it.

use std::ffi::{c_void, CStr, CString};
use std::ptr::{self, NonNull};

use super::sys;

const KEY: &CStr = c"mod_prison:carry";

/// The process pool of the main server `s` (`s->process->pool`).
///
/// # Safety
/// `s` must be a live server_rec.
pub unsafe fn process_pool(s: *const sys::server_rec) -> Option<NonNull<sys::apr_pool_t>> {
    // SAFETY: per the contract `s` is live; `process` is null or httpd's process_rec, which
    // lives as long as httpd.
    unsafe { (*s).process.as_ref() }.and_then(|process| NonNull::new(process.pool))
}

/// Stores `carry` for the next generation, replacing any earlier one. An error (a NUL in the
/// text) is returned for the log; the carry is then lost.
///
/// # Safety
/// `pool` must be httpd's live process pool, used from the parent's single thread.
pub unsafe fn store(pool: NonNull<sys::apr_pool_t>, carry: &str) -> Result<(), String> {
    let text = CString::new(carry).map_err(|_| format!("carry {carry:?} contains a NUL byte"))?;
    // SAFETY: per the contract `pool` is live; apr_pstrdup copies the NUL-terminated text into
    // it, so the copy outlives this module; apr_pool_userdata_set copies the key into the pool
    // when it is new and registers no cleanup (None).
    unsafe {
        let copy = sys::apr_pstrdup(pool.as_ptr(), text.as_ptr());
        sys::apr_pool_userdata_set(copy as *const c_void, KEY.as_ptr(), None, pool.as_ptr());
    }
    Ok(())
}

/// Takes the carry a previous generation stored, if any, and clears it: each carry is used at
/// most once.
///
/// # Safety
/// `pool` must be httpd's live process pool, used from the parent's single thread.
pub unsafe fn take(pool: NonNull<sys::apr_pool_t>) -> Option<String> {
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: per the contract `pool` is live; `data` is writable; the key is NUL-terminated.
    unsafe { sys::apr_pool_userdata_get(&mut data, KEY.as_ptr(), pool.as_ptr()) };
    if data.is_null() {
        return None;
    }
    // SAFETY: only `store` sets this key, always to a NUL-terminated copy in this same pool.
    let carry = unsafe { CStr::from_ptr(data.cast::<std::ffi::c_char>()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above; setting null removes the entry (apr_hash_set with a null value).
    unsafe { sys::apr_pool_userdata_set(ptr::null(), KEY.as_ptr(), None, pool.as_ptr()) };
    Some(carry)
}
