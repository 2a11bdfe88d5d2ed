//! The bindgen output over `apxs/wrapper.h` (see build.rs); nothing else.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
#![allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    unsafe_op_in_unsafe_fn
)]
#![allow(missing_debug_implementations)]

include!(concat!(env!("OUT_DIR"), "/httpd_sys.rs"));
