//! `PrisonConnect <dest> [<dest> …]`: where the prison may connect and send datagrams to.
//!
//! A destination is an address or a network (CIDR), IPv4 or IPv6, with an optional port or
//! port range: `192.0.2.10:3306`, `192.0.2.0/24:1000-2000`, `[2001:db8::/64]:443`,
//! `0.0.0.0/0:443`, `2001:db8::1`. Two words stand for lists: `none` (nothing) and `dns` (the
//! nameservers of the prison's resolv.conf on port 53, expanded when the configuration is
//! finished, see [`nameservers`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// The most destinations a prison may list (after `dns` is expanded): each one is a few
/// instructions in every connect and sendmsg program, checked in order.
pub const MAX_DESTINATIONS: usize = 256;

/// Why a destination was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConnectError {
    #[error("could not make sense of {0:?} as a destination: write an address or network, optionally with a port or port range (192.0.2.10:3306, 192.0.2.0/24, [2001:db8::/64]:443, 0.0.0.0/0:1000-2000), none or dns")]
    NotADestination(String),
    #[error("{0:?}: the prefix length must be 0-32 for IPv4 and 0-128 for IPv6")]
    BadPrefix(String),
    #[error("{given:?} has host bits set; write the network {network}")]
    HostBits { given: String, network: String },
    #[error("{0:?}: ports are 1-65535, a range is low-high with low <= high")]
    BadPort(String),
    #[error("{0} is an IPv4-mapped IPv6 address, which the prison can never connect to; write the IPv4 address {1} instead")]
    Mapped(String, Ipv4Addr),
    #[error("{0} is no destination; for any address write 0.0.0.0/0 or ::/0")]
    Unspecified(IpAddr),
    #[error("none cannot be combined with destinations (it means no destination at all)")]
    NoneWithOthers,
    #[error("more than {MAX_DESTINATIONS} destinations")]
    TooMany,
}

/// An address and how many of its leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

impl Network {
    /// Host bits are zero (checked by the parser).
    fn new(addr: IpAddr, prefix: u8) -> Self {
        match addr {
            IpAddr::V4(a) => Network::V4(a, prefix),
            IpAddr::V6(a) => Network::V6(a, prefix),
        }
    }

    /// Whether the network lies within the host's loopback (127.0.0.0/8, ::1): only such an
    /// entry lets the prison reach the host's loopback services (see the README).
    pub fn is_loopback(&self) -> bool {
        match *self {
            Network::V4(a, prefix) => prefix >= 8 && a.octets()[0] == 127,
            Network::V6(a, prefix) => prefix == 128 && a == Ipv6Addr::LOCALHOST,
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (*self, addr) {
            (Network::V4(net, prefix), IpAddr::V4(a)) => {
                u32::from(a) & mask4(prefix) == u32::from(net)
            }
            (Network::V6(net, prefix), IpAddr::V6(a)) => {
                u128::from(a) & mask6(prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// The IPv4 netmask of `prefix` (0-32) in host order.
pub fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The IPv6 netmask of `prefix` (0-128) in host order.
pub fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// A port range, both ends included (one port: `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

/// One place the prison may connect to. `ports: None` is every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub network: Network,
    pub ports: Option<Ports>,
}

impl Destination {
    /// Whether a connection to `addr:port` matches.
    pub fn matches(&self, addr: IpAddr, port: u16) -> bool {
        self.network.contains(addr)
            && self
                .ports
                .is_none_or(|p| (p.first..=p.last).contains(&port))
    }
}

impl fmt::Display for Destination {
    /// The canonical form, which parses back to the same destination.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (net, full) = match self.network {
            Network::V4(a, p) => (
                if p == 32 {
                    a.to_string()
                } else {
                    format!("{a}/{p}")
                },
                false,
            ),
            Network::V6(a, p) => (
                if p == 128 {
                    a.to_string()
                } else {
                    format!("{a}/{p}")
                },
                true,
            ),
        };
        match (self.ports, full) {
            (None, _) => write!(f, "{net}"),
            (Some(p), true) => write!(f, "[{net}]:{}", PortsText(p)),
            (Some(p), false) => write!(f, "{net}:{}", PortsText(p)),
        }
    }
}

struct PortsText(Ports);

impl fmt::Display for PortsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.first == self.0.last {
            write!(f, "{}", self.0.first)
        } else {
            write!(f, "{}-{}", self.0.first, self.0.last)
        }
    }
}

/// One word of the directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectEntry {
    /// `none`: nothing at all (the directive set, its list empty).
    Nothing,
    /// `dns`: the prison's nameservers on port 53.
    Dns,
    Destination(Destination),
}

impl ConnectEntry {
    pub fn parse(word: &str) -> Result<Self, ConnectError> {
        match word {
            w if w.eq_ignore_ascii_case("none") => Ok(ConnectEntry::Nothing),
            w if w.eq_ignore_ascii_case("dns") => Ok(ConnectEntry::Dns),
            w => parse_destination(w).map(ConnectEntry::Destination),
        }
    }
}

impl fmt::Display for ConnectEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectEntry::Nothing => write!(f, "none"),
            ConnectEntry::Dns => write!(f, "dns"),
            ConnectEntry::Destination(d) => write!(f, "{d}"),
        }
    }
}

/// Parses one directive's words, to be appended to `so_far` (the earlier PrisonConnect lines).
pub fn parse_entries(
    words: &[&str],
    so_far: &[ConnectEntry],
) -> Result<Vec<ConnectEntry>, ConnectError> {
    let entries = words
        .iter()
        .map(|w| ConnectEntry::parse(w))
        .collect::<Result<Vec<_>, _>>()?;
    let all: Vec<&ConnectEntry> = so_far.iter().chain(&entries).collect();
    if all.iter().any(|e| **e == ConnectEntry::Nothing) && all.len() > 1 {
        return Err(ConnectError::NoneWithOthers);
    }
    if all.len() > MAX_DESTINATIONS {
        return Err(ConnectError::TooMany);
    }
    Ok(entries)
}

fn parse_destination(word: &str) -> Result<Destination, ConnectError> {
    let bad = || ConnectError::NotADestination(word.to_owned());
    // [v6 or v6/n]:ports, [v6]; a.b.c.d[/n][:ports]; v6[/n] without brackets has no port.
    let (net, ports) = if let Some(rest) = word.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if inside.contains('.') && !inside.contains(':') {
            return Err(bad());
        }
        let ports = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (inside, ports)
    } else if word.matches(':').count() == 1 {
        let (net, ports) = word.split_once(':').ok_or_else(bad)?;
        (net, Some(ports))
    } else {
        (word, None)
    };
    let (addr, prefix) = match net.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (net, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => digits(p)
            .and_then(|p| u8::try_from(p).ok())
            .filter(|&p| p <= max)
            .ok_or_else(|| ConnectError::BadPrefix(word.to_owned()))?,
    };
    if let IpAddr::V6(v6) = addr {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(ConnectError::Mapped(net.to_owned(), v4));
        }
    }
    if addr.is_unspecified() && prefix == max {
        return Err(ConnectError::Unspecified(addr));
    }
    let network = match addr {
        IpAddr::V4(a) => {
            let masked = Ipv4Addr::from(u32::from(a) & mask4(prefix));
            (masked != a).then(|| format!("{masked}/{prefix}"))
        }
        IpAddr::V6(a) => {
            let masked = Ipv6Addr::from(u128::from(a) & mask6(prefix));
            (masked != a).then(|| format!("{masked}/{prefix}"))
        }
    };
    if let Some(network) = network {
        return Err(ConnectError::HostBits {
            given: word.to_owned(),
            network,
        });
    }
    let ports = ports.map(|p| parse_ports(p, word)).transpose()?;
    Ok(Destination {
        network: Network::new(addr, prefix),
        ports,
    })
}

/// Only ASCII digits (`u32::from_str` would take a leading `+`), at most 5 of them.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_ports(text: &str, word: &str) -> Result<Ports, ConnectError> {
    let bad = || ConnectError::BadPort(word.to_owned());
    let port = |t: &str| {
        digits(t)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .ok_or_else(bad)
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if first > last {
        return Err(bad());
    }
    Ok(Ports { first, last })
}

/// The `nameserver` lines of a resolv.conf, in order, as destinations on port 53 (TCP and UDP:
/// resolvers fall back to TCP for long answers). Unparsable lines are skipped, as the C
/// library does; a link-local IPv6 server's `%scope` is dropped with it.
pub fn nameservers(resolv_conf: &str) -> Vec<Destination> {
    let mut servers = Vec::new();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words
            .next()
            .and_then(|a| a.split('%').next())
            .and_then(|a| a.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        let server = Destination {
            network: Network::new(addr, prefix),
            ports: Some(Ports {
                first: 53,
                last: 53,
            }),
        };
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(word: &str) -> Destination {
        match ConnectEntry::parse(word) {
            Ok(ConnectEntry::Destination(d)) => d,
            other => panic!("{word}: {other:?}"),
        }
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for (word, canonical) in [
            ("192.0.2.10", "192.0.2.10"),
            ("192.0.2.10/32", "192.0.2.10"),
            ("192.0.2.10:3306", "192.0.2.10:3306"),
            ("192.0.2.0/24", "192.0.2.0/24"),
            ("192.0.2.0/24:1000-2000", "192.0.2.0/24:1000-2000"),
            ("0.0.0.0/0:443", "0.0.0.0/0:443"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("127.0.0.1:3306", "127.0.0.1:3306"),
            ("192.0.2.10:80-80", "192.0.2.10:80"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::/64", "2001:db8::/64"),
            ("[2001:db8::/64]:443", "[2001:db8::/64]:443"),
            ("[2001:db8::1]:1-65535", "[2001:db8::1]:1-65535"),
            ("[::/0]:53", "[::/0]:53"),
            ("::1", "::1"),
            ("[::1]:5432", "[::1]:5432"),
        ] {
            let d = dest(word);
            assert_eq!(d.to_string(), canonical, "{word}");
            assert_eq!(dest(canonical), d, "{word}");
        }
        assert_eq!(ConnectEntry::parse("NONE"), Ok(ConnectEntry::Nothing));
        assert_eq!(ConnectEntry::parse("dns"), Ok(ConnectEntry::Dns));
    }

    #[test]
    fn a_destination_matches_its_network_and_ports_only() {
        let d = dest("192.0.2.0/24:1000-2000");
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(d.matches(a("192.0.2.77"), 1000));
        assert!(d.matches(a("192.0.2.255"), 2000));
        assert!(!d.matches(a("192.0.2.77"), 999));
        assert!(!d.matches(a("192.0.2.77"), 2001));
        assert!(!d.matches(a("192.0.3.1"), 1500));
        assert!(!d.matches(a("2001:db8::1"), 1500));
        let any = dest("0.0.0.0/0");
        assert!(any.matches(a("203.0.113.9"), 1));
        let v6 = dest("[2001:db8::/64]:443");
        assert!(v6.matches(a("2001:db8::ffff:1"), 443));
        assert!(!v6.matches(a("2001:db8:0:1::1"), 443));
    }

    #[test]
    fn only_networks_inside_the_loopback_are_loopback() {
        for (word, loopback) in [
            ("127.0.0.1:3306", true),
            ("127.0.0.0/8", true),
            ("127.0.0.53:53", true),
            ("0.0.0.0/0", false),
            ("64.0.0.0/2", false),
            ("::1", true),
            ("::/0", false),
            ("::/127", false),
        ] {
            assert_eq!(dest(word).network.is_loopback(), loopback, "{word}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        use ConnectError::*;
        let err = |w: &str| ConnectEntry::parse(w).unwrap_err();
        for w in [
            "",
            "example.org",
            "192.0.2.10:",
            "192.0.2.10:x",
            "[192.0.2.10]:80",
            "2001:db8::1:80x",
            "[2001:db8::1]80",
            "[2001:db8::1",
            "192.0.2.10/24/1",
            " 192.0.2.10",
        ] {
            assert!(
                matches!(err(w), NotADestination(_) | BadPrefix(_) | BadPort(_)),
                "{w:?}: {:?}",
                err(w)
            );
        }
        assert_eq!(err("192.0.2.0/33"), BadPrefix("192.0.2.0/33".into()));
        assert_eq!(err("192.0.2.0/+8"), BadPrefix("192.0.2.0/+8".into()));
        assert_eq!(err("2001:db8::/129"), BadPrefix("2001:db8::/129".into()));
        assert_eq!(
            err("192.0.2.5/24"),
            HostBits {
                given: "192.0.2.5/24".into(),
                network: "192.0.2.0/24".into()
            }
        );
        assert_eq!(
            err("[2001:db8::1/64]:443"),
            HostBits {
                given: "[2001:db8::1/64]:443".into(),
                network: "2001:db8::/64".into()
            }
        );
        for w in [
            "192.0.2.10:0",
            "192.0.2.10:65536",
            "192.0.2.10:20-10",
            "192.0.2.10:+80",
        ] {
            assert_eq!(err(w), BadPort(w.into()), "{w}");
        }
        assert_eq!(
            err("::ffff:192.0.2.10"),
            Mapped("::ffff:192.0.2.10".into(), Ipv4Addr::new(192, 0, 2, 10))
        );
        assert_eq!(err("0.0.0.0"), Unspecified("0.0.0.0".parse().unwrap()));
        assert_eq!(err("[::]:80"), Unspecified("::".parse().unwrap()));
    }

    #[test]
    fn none_stands_alone_across_lines_too() {
        assert_eq!(
            parse_entries(&["none"], &[]),
            Ok(vec![ConnectEntry::Nothing])
        );
        assert_eq!(
            parse_entries(&["none", "dns"], &[]),
            Err(ConnectError::NoneWithOthers)
        );
        assert_eq!(
            parse_entries(&["192.0.2.10"], &[ConnectEntry::Nothing]),
            Err(ConnectError::NoneWithOthers)
        );
        let many: Vec<String> = (0..=MAX_DESTINATIONS)
            .map(|i| format!("192.0.2.1:{}", i + 1))
            .collect();
        let words: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(parse_entries(&words, &[]), Err(ConnectError::TooMany));
        assert!(parse_entries(&words[1..], &[]).is_ok());
    }

    #[test]
    fn nameservers_are_read_as_the_c_library_does() {
        let text = "# generated\nsearch example.org\nnameserver 127.0.0.53\n\
                    nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver bogus\n\
                    nameserver 127.0.0.53\noptions edns0\n nameserver 192.0.2.53\n";
        let servers: Vec<String> = nameservers(text).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            servers,
            [
                "127.0.0.53:53",
                "[2001:db8::53]:53",
                "[fe80::1]:53",
                "192.0.2.53:53"
            ]
        );
        assert!(nameservers("").is_empty());
    }
}
