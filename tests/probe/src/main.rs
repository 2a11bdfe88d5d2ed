//! prison-probe: a static CGI that runs inside mod_prison's prison and reports, as one JSON
//! object, what it sees and what it can do. The test suite asks it questions through the query
//! string and checks the answers; run from a shell (`prison-probe key=value ...`) it gives the
//! same report for negative controls outside the prison.
//!
//! It must work in a PrisonDir that holds nothing but itself: no shared libraries, no /proc,
//! no /etc. Every check reports its own failure, and a panic still ends in a JSON answer.

mod attack;
mod exec;
mod files;
mod json;
mod net;
mod params;
mod process;
mod resources;
mod security;
mod sys;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use json::{Json, Object};
use params::{lossy, Request};
use resources::Hoard;
use sys::{report, Failure, Outcome};

const PROBE: &str = concat!("prison-probe ", env!("CARGO_PKG_VERSION"));
const CGI_HEADER: &str = "Content-Type: application/json\r\n\r\n";

/// The message of a panic, kept by the hook for the fallback answer.
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn main() {
    let cgi = std::env::var_os("GATEWAY_INTERFACE").is_some();
    install_panic_hook();
    let body = std::panic::catch_unwind(|| run(cgi)).unwrap_or_else(|_| panic_answer(cgi));
    let mut out = std::io::stdout().lock();
    let header = if cgi { CGI_HEADER } else { "" };
    // If the client or the pipe has gone, there is no one left to tell.
    let _ = writeln!(out, "{header}{body}").and_then(|()| out.flush());
}

fn run(cgi: bool) -> String {
    let pairs = if cgi {
        let query = std::env::var_os("QUERY_STRING").unwrap_or_default();
        params::parse_query(query.as_bytes())
    } else {
        params::parse_args(std::env::args_os().skip(1))
    };
    let request = Request::from_pairs(pairs);
    if request.panic {
        panic!("panic requested by the caller (panic=1)");
    }
    if request.quick {
        return Json::from(
            Object::new()
                .with("probe", PROBE)
                .with("pid", std::process::id()),
        )
        .render();
    }

    // Checks that change the process run first, so that the report describes the process as
    // it is after them (e.g. still jailed after a graceful restart, with the memory held).
    let widened = request.widen.then(|| report(resources::widen_affinity()));
    let slept = request
        .sleep_ms
        .clone()
        .map(|ms| report(ms.map_err(Failure::invalid).and_then(resources::sleep)));
    let mut hoard = Hoard::default();
    let allocated = request.alloc_bytes.clone().map(|bytes| {
        report(
            bytes
                .map_err(Failure::invalid)
                .and_then(|bytes| resources::alloc(bytes, &mut hoard)),
        )
    });
    let forked = request.forks.clone().map(|n| {
        report(
            n.map_err(Failure::invalid)
                .and_then(resources::fork_children),
        )
    });

    let seccomp_floor = request.seccomp_floor.clone().map(|n| {
        report(
            n.map_err(Failure::invalid)
                .and_then(resources::seccomp_floor),
        )
    });
    let syscalls = request.syscalls.clone().map(|n| {
        report(
            n.map_err(Failure::invalid)
                .and_then(resources::syscall_loop),
        )
    });
    let mut answer = Object::new()
        .with("probe", PROBE)
        .with("mode", if cgi { "cgi" } else { "cli" });
    answer.extend(process::identity());
    answer.extend(files::view());
    answer.extend(security::restrictions());
    answer.insert("unknown_params", request.unknown.clone());

    let optional = [
        ("widen", widened),
        ("sleep", slept),
        ("alloc", allocated),
        ("fork", forked),
        ("syscalls", syscalls),
        ("seccomp_floor", seccomp_floor),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            answer.insert(key, value);
        }
    }
    if request.attack {
        answer.insert("attack", attack::run(&request.attack_targets));
    }
    if request.namespaces {
        answer.insert("ns", report(files::namespaces()));
    }
    insert_keyed(&mut answer, "read", &request.read, |p| files::read_head(p));
    insert_keyed(&mut answer, "ls", &request.ls, |p| files::list_dir(p));
    let write_size = request.write_size.clone().transpose();
    insert_keyed(
        &mut answer,
        "write",
        &request.write,
        |p| match &write_size {
            Ok(size) => files::write_file(p, *size),
            Err(e) => Err(Failure::invalid(e.clone())),
        },
    );
    insert_keyed(&mut answer, "exec", &request.exec, |p| exec::exec(p));
    insert_keyed(&mut answer, "connect", &request.connect, |t| {
        net::connect_tcp(t)
    });
    insert_keyed(&mut answer, "udp", &request.udp, |t| net::send_udp(t));
    insert_keyed(&mut answer, "bind", &request.bind, |b| net::bind_tcp(b));
    insert_keyed(&mut answer, "socket", &request.socket, |k| {
        net::open_kind(k)
    });
    insert_keyed(&mut answer, "abstract", &request.abstract_unix, |n| {
        net::connect_abstract(n)
    });
    if !request.resolve.is_empty() {
        let mut results = Object::new();
        for name in &request.resolve {
            results.insert(name.clone(), net::resolve(name));
        }
        answer.insert("resolve", results);
    }

    let body = Json::from(answer).render();
    drop(hoard);
    body
}

/// Adds `key: {item: result, ...}` when the caller asked for `key=item` at least once.
fn insert_keyed<T: AsRef<[u8]>>(
    answer: &mut Object,
    key: &str,
    items: &[T],
    check: impl Fn(&T) -> Outcome,
) {
    if items.is_empty() {
        return;
    }
    let mut results = Object::new();
    for item in items {
        results.insert(lossy(item.as_ref()), report(check(item)));
    }
    answer.insert(key, results);
}

/// Remembers the panic message; the default hook still writes it to stderr (httpd's error log).
fn install_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(info.to_string());
        }
        default_hook(info);
    }));
}

/// The answer after a panic: still one JSON object, with an `error` field.
fn panic_answer(cgi: bool) -> String {
    let message = PANIC_MESSAGE
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or_else(|| "unknown panic".to_owned());
    let answer = Object::new()
        .with("probe", PROBE)
        .with("mode", if cgi { "cgi" } else { "cli" })
        .with("pid", std::process::id())
        .with("error", format!("panic: {message}"));
    Json::from(answer).render()
}
