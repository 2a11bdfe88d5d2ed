//! mod_prison: an Apache httpd 2.4 module that locks every httpd child — and so every mod_php
//! script, CGI and other code running in it — inside a kernel-enforced prison.
//!
//! Layout (see README.md):
//! - [`config`]: the directives, parsed and validated at config time; pure.
//! - [`host`]: read-only host facts the checks need.
//! - `apache`: the only code that touches httpd/APR (compiled only when building the module for
//!   the host OS, or for FreeBSD by `make check-freebsd-link`, and never for unit tests, which
//!   could not link against httpd's symbols).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod host;
pub mod jail;

#[cfg(all(prison_httpd, not(test)))]
mod apache;
