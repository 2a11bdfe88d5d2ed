//! What the probe can reach: TCP connect, UDP send, bind, socket kinds, name resolution.
//!
//! Both socket checks report the local address the kernel chose (getsockname), because the
//! prison may force the source address (PrisonIP).

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::json::{Json, Object};
use crate::sys::{cvt, report, Errno, Failure, Outcome};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const UDP_PAYLOAD: &[u8] = b"probe";

/// `connect=ip:port` or `connect=[v6]:port`: a TCP connection with a 2 s timeout.
/// Both outcomes carry `local` when the socket had a local address.
pub fn connect_tcp(target: &str) -> Outcome {
    let peer = parse_target(target)?;
    let socket = open_socket(&peer, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)?;
    let result = connect_with_timeout(&socket, &peer, CONNECT_TIMEOUT);
    let local = local_address(&socket);
    match result {
        Ok(()) => Ok(Object::new()
            .with("peer", peer.to_string())
            .with("local", local)),
        Err(errno) => Err(Failure::from(errno).with("local", local)),
    }
}

/// `abstract=name`: connect to the abstract unix socket `name`. Abstract sockets belong to a
/// network namespace, not to the file system, so only Landlock's scope (ABI 6) keeps a prison
/// that shares the host's network namespace (PrisonIP) from a host server's.
pub fn connect_abstract(name: &str) -> Outcome {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let address = SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixStream::connect_addr(&address)?;
    Ok(Object::new().with("name", name))
}

/// `udp=ip:port`: send one datagram ("probe") without connecting the socket.
///
/// The kernel picks the source address per datagram, so `local` shows the address the socket
/// is bound to (often the wildcard with an ephemeral port); the receiver sees the real source.
pub fn send_udp(target: &str) -> Outcome {
    let peer = parse_target(target)?;
    let socket = open_socket(&peer, libc::SOCK_DGRAM)?;
    let raw = RawAddr::from(&peer);
    // SAFETY: the payload and the address are valid for the lengths given.
    let sent = cvt(unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            UDP_PAYLOAD.as_ptr().cast(),
            UDP_PAYLOAD.len(),
            0,
            raw.as_ptr(),
            raw.len,
        )
    });
    let local = local_address(&socket);
    match sent {
        Ok(n) => Ok(Object::new()
            .with("peer", peer.to_string())
            .with("sent", n)
            .with("local", local)),
        Err(errno) => Err(Failure::from(errno).with("local", local)),
    }
}

/// `tfo=ip:port`: TCP fast open: `sendto(MSG_FASTOPEN)` on a fresh socket connects and sends
/// in one call, without `connect()`. Waits for the connection like `connect=`.
pub fn fast_open(target: &str) -> Outcome {
    let peer = parse_target(target)?;
    let socket = open_socket(&peer, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)?;
    let raw = RawAddr::from(&peer);
    // SAFETY: the payload and the address are valid for the lengths given.
    let sent = cvt(unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            UDP_PAYLOAD.as_ptr().cast(),
            UDP_PAYLOAD.len(),
            libc::MSG_FASTOPEN,
            raw.as_ptr(),
            raw.len,
        )
    });
    let result = match sent {
        Ok(_) => Ok(()),
        // No cookie yet: the SYN went without data; the connection is on its way.
        Err(Errno(libc::EINPROGRESS)) => wait_connected(&socket, CONNECT_TIMEOUT),
        Err(errno) => Err(errno),
    };
    let local = local_address(&socket);
    match result {
        Ok(()) => Ok(Object::new()
            .with("peer", peer.to_string())
            .with("local", local)),
        Err(errno) => Err(Failure::from(errno).with("local", local)),
    }
}

/// `udpconnect=ip:port`: `connect()` a UDP socket, then `send()` one datagram on it.
pub fn send_udp_connected(target: &str) -> Outcome {
    let peer = parse_target(target)?;
    let socket = open_socket(&peer, libc::SOCK_DGRAM)?;
    let raw = RawAddr::from(&peer);
    // SAFETY: the address is valid for `raw.len` bytes.
    cvt(unsafe { libc::connect(socket.as_raw_fd(), raw.as_ptr(), raw.len) })?;
    // SAFETY: the payload is valid for its length.
    let n = cvt(unsafe {
        libc::send(
            socket.as_raw_fd(),
            UDP_PAYLOAD.as_ptr().cast(),
            UDP_PAYLOAD.len(),
            0,
        )
    })?;
    Ok(Object::new()
        .with("peer", peer.to_string())
        .with("sent", n)
        .with("local", local_address(&socket)))
}

/// `bind=ip:port`: bind a TCP socket and report the local address the kernel gave it.
/// `bind=ip:port/target`: then connect it to `target` (ip:port) and report the local address
/// again, to show what a bound socket's connections carry as their source.
pub fn bind_tcp(spec: &str) -> Outcome {
    let (address, target) = match spec.split_once('/') {
        Some((address, target)) => (address, Some(parse_target(target)?)),
        None => (spec, None),
    };
    let address = parse_target(address)?;
    let socket = open_socket(&address, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)?;
    let raw = RawAddr::from(&address);
    // SAFETY: the address is valid for `raw.len` bytes.
    cvt(unsafe { libc::bind(socket.as_raw_fd(), raw.as_ptr(), raw.len) })?;
    let bound = Object::new().with("local", local_address(&socket));
    let Some(peer) = target else {
        return Ok(bound);
    };
    let result = connect_with_timeout(&socket, &peer, CONNECT_TIMEOUT);
    let connected = local_address(&socket);
    match result {
        Ok(()) => Ok(bound
            .with("peer", peer.to_string())
            .with("connected_local", connected)),
        Err(errno) => Err(Failure::from(errno).with("bound", Json::from(bound))),
    }
}

/// `socket=kind`: whether a socket of that kind can be created; kinds are `tcp4`, `tcp6`,
/// `udp4`, `udp6`, `raw4`, `raw6` (ICMP) and `ping4`, `ping6` (unprivileged ICMP datagrams).
pub fn open_kind(kind: &str) -> Outcome {
    let (family, kind_flag, protocol) = match kind {
        "tcp4" => (libc::AF_INET, libc::SOCK_STREAM, 0),
        "tcp6" => (libc::AF_INET6, libc::SOCK_STREAM, 0),
        "udp4" => (libc::AF_INET, libc::SOCK_DGRAM, 0),
        "udp6" => (libc::AF_INET6, libc::SOCK_DGRAM, 0),
        "raw4" => (libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        "raw6" => (libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6),
        "ping4" => (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        "ping6" => (libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6),
        _ => return Err(Failure::invalid(format!("{kind}: unknown socket kind"))),
    };
    // SAFETY: socket() takes no pointers.
    let fd = cvt(unsafe { libc::socket(family, kind_flag | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` was just created and nothing else owns it; dropping it closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(Object::new())
}

/// `resolve=name`: getaddrinfo, as the C library in the prison does it (/etc/hosts, DNS).
///
/// Failures carry `gai_error` (the EAI_ code) and, for EAI_SYSTEM only, `errno`.
pub fn resolve(name: &str) -> Json {
    match getaddrinfo(name) {
        Ok(addresses) => report(Ok(Object::new().with("addresses", addresses))),
        Err(GaiError::Invalid(detail)) => report(Err(Failure::invalid(detail))),
        Err(GaiError::Code(code, errno)) => {
            let mut out = Object::new()
                .with("ok", false)
                .with("gai_error", code)
                .with("error", gai_describe(code));
            if let Some(errno) = errno {
                out.insert("errno", errno.0);
                out.insert("detail", errno.describe());
            }
            out.into()
        }
    }
}

fn parse_target(target: &str) -> Result<SocketAddr, Failure> {
    target
        .parse()
        .map_err(|_| Failure::invalid(format!("{target}: expected ip:port or [ipv6]:port")))
}

fn open_socket(peer: &SocketAddr, kind: libc::c_int) -> Result<OwnedFd, Errno> {
    let family = match peer {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() takes no pointers.
    let fd = cvt(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn connect_with_timeout(
    socket: &OwnedFd,
    peer: &SocketAddr,
    timeout: Duration,
) -> Result<(), Errno> {
    let raw = RawAddr::from(peer);
    // SAFETY: the address is valid for `raw.len` bytes.
    match cvt(unsafe { libc::connect(socket.as_raw_fd(), raw.as_ptr(), raw.len) }) {
        Ok(_) => Ok(()),
        Err(Errno(libc::EINPROGRESS)) => wait_connected(socket, timeout),
        Err(errno) => Err(errno),
    }
}

/// Waits for a non-blocking connect to finish; its result.
fn wait_connected(socket: &OwnedFd, timeout: Duration) -> Result<(), Errno> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        match cvt(unsafe { libc::poll(&mut pfd, 1, millis) }) {
            Ok(0) => return Err(Errno(libc::ETIMEDOUT)),
            Ok(_) => break,
            Err(Errno(libc::EINTR)) => continue,
            Err(errno) => return Err(errno),
        }
    }
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one c_int into `error`, whose size `len` gives.
    cvt(unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    match error {
        0 => Ok(()),
        errno => Err(Errno(errno)),
    }
}

/// The socket's local address, or null if it has none we can show.
fn local_address(socket: &OwnedFd) -> Json {
    let mut raw = RawAddr::empty();
    // SAFETY: getsockname writes at most `raw.len` bytes into the storage and updates the length.
    let result =
        cvt(unsafe { libc::getsockname(socket.as_raw_fd(), raw.as_mut_ptr(), &mut raw.len) });
    match result {
        Ok(_) => raw.to_socket_addr().map(|a| a.to_string()).into(),
        Err(_) => Json::Null,
    }
}

/// A socket address in the kernel's form.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn empty() -> Self {
        RawAddr {
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid (AF_UNSPEC) value.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    fn to_socket_addr(&self) -> Option<SocketAddr> {
        let len = self.len as usize;
        match libc::c_int::from(self.storage.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and sockaddr_storage
                // is large and aligned enough for it.
                let sin = unsafe { &*(self.as_ptr().cast::<libc::sockaddr_in>()) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(self.as_ptr().cast::<libc::sockaddr_in6>()) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

impl From<&SocketAddr> for RawAddr {
    fn from(addr: &SocketAddr) -> Self {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_in is plain data; all-zero is valid (and zeroes sin_zero).
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
                unsafe { raw.as_mut_ptr().cast::<libc::sockaddr_in>().write(sin) };
                raw.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(v6) => {
                // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_flowinfo = v6.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_scope_id = v6.scope_id();
                // SAFETY: as above.
                unsafe { raw.as_mut_ptr().cast::<libc::sockaddr_in6>().write(sin6) };
                raw.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }
}

enum GaiError {
    Invalid(String),
    /// The EAI_ code, and errno for EAI_SYSTEM.
    Code(libc::c_int, Option<Errno>),
}

/// The distinct addresses getaddrinfo returns for `name`, in its order.
fn getaddrinfo(name: &str) -> Result<Vec<String>, GaiError> {
    let c_name = CString::new(name)
        .map_err(|_| GaiError::Invalid(format!("{name:?}: contains a NUL byte")))?;
    // SAFETY: addrinfo is plain data; all-zero means "no hints" in every field.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    // One socket type, so each address comes back once rather than once per type.
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: the name is NUL-terminated, the service may be null, and `list` receives a list we
    // free below.
    let code = unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if code != 0 {
        let errno = (code == libc::EAI_SYSTEM).then(Errno::last);
        return Err(GaiError::Code(code, errno));
    }
    let mut addresses = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getaddrinfo returned, not yet freed.
        let info = unsafe { &*node };
        if let Some(ip) = address_of(info) {
            let ip = ip.to_string();
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        node = info.ai_next;
    }
    // SAFETY: `list` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(addresses)
}

fn address_of(info: &libc::addrinfo) -> Option<IpAddr> {
    if info.ai_addr.is_null() {
        return None;
    }
    let len = info.ai_addrlen as usize;
    if len > std::mem::size_of::<libc::sockaddr_storage>() {
        return None;
    }
    let mut raw = RawAddr::empty();
    // SAFETY: ai_addr points to `len` bytes, which fit in the storage.
    unsafe {
        std::ptr::copy_nonoverlapping(
            info.ai_addr.cast::<u8>(),
            raw.as_mut_ptr().cast::<u8>(),
            len,
        )
    };
    raw.len = info.ai_addrlen;
    raw.to_socket_addr().map(|a| a.ip())
}

/// "EAI_NONAME: Name or service not known".
fn gai_describe(code: libc::c_int) -> String {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(libc::gai_strerror(code)) };
    let text = text.to_string_lossy();
    match gai_name(code) {
        Some(name) => format!("{name}: {text}"),
        None => format!("EAI {code}: {text}"),
    }
}

fn gai_name(code: libc::c_int) -> Option<&'static str> {
    Some(match code {
        libc::EAI_BADFLAGS => "EAI_BADFLAGS",
        libc::EAI_NONAME => "EAI_NONAME",
        libc::EAI_AGAIN => "EAI_AGAIN",
        libc::EAI_FAIL => "EAI_FAIL",
        libc::EAI_NODATA => "EAI_NODATA",
        libc::EAI_FAMILY => "EAI_FAMILY",
        libc::EAI_SOCKTYPE => "EAI_SOCKTYPE",
        libc::EAI_SERVICE => "EAI_SERVICE",
        libc::EAI_MEMORY => "EAI_MEMORY",
        libc::EAI_SYSTEM => "EAI_SYSTEM",
        libc::EAI_OVERFLOW => "EAI_OVERFLOW",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addresses_round_trip() {
        for text in ["127.0.0.1:80", "[::1]:443", "[fe80::1%2]:8080", "0.0.0.0:0"] {
            let addr: SocketAddr = text.parse().expect(text);
            assert_eq!(RawAddr::from(&addr).to_socket_addr(), Some(addr), "{text}");
        }
    }

    #[test]
    fn targets_must_name_a_port() {
        assert!(parse_target("127.0.0.1").is_err());
        assert!(parse_target("::1:80").is_err());
        assert!(parse_target("[::1]:80").is_ok());
    }
}
