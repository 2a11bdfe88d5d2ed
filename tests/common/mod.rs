//! The integration harness: real Debian `apache2` instances with mod_prison loaded, on
//! 127.0.0.1, each in its own temporary ServerRoot, checked from outside through /proc.
//!
//! Every instance is stopped and its directory removed when the [`Httpd`] is dropped, also when
//! the test panics; processes of the instance that outlive the stop are killed (and the test
//! that checks cleanup fails first, see [`Httpd::stop`]).
//!
//! The tests need root (httpd starts as root and jails its children) and Debian's apache2
//! (`make deps`). Without them they fail with a message saying so; they never pass silently.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

mod cgroups;
mod http;
mod httpd;
pub mod netns;
mod proc;

pub use cgroups::*;
pub use http::*;
pub use httpd::*;
pub use proc::*;
pub use serde_json::Value;
