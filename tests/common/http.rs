//! Talking to an instance: free ports, plain HTTP/1.0 requests and the probe's JSON answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::*;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:port.
pub fn http_get(port: u16, path: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {raw:?}")))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// The probe's JSON answers

/// A probe result's key (a path, an address) as a JSON pointer segment: `~` and `/` escaped
/// (RFC 6901).
pub fn key(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// Whether the probe reports `{section: {item: {ok: true}}}`, e.g. `ok_at(v, "read", "/etc/hosts")`.
pub fn ok_at(v: &Value, section: &str, item: &str) -> bool {
    v.pointer(&format!("/{section}/{}/ok", key(item)))
        .and_then(Value::as_bool)
        == Some(true)
}

/// The string at a JSON pointer of the probe's answer, or "".
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}
