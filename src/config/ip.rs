//! `PrisonIP`: the prison's own addresses, at most one IPv4 and one IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Why an address list was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpError {
    #[error("could not make sense of {0:?} as an IPv4 or IPv6 address")]
    NotAnAddress(String),
    #[error(
        "two IPv4 addresses ({0} and {1}); a prison has at most one IPv4 and one IPv6 address"
    )]
    TwoV4(Ipv4Addr, Ipv4Addr),
    #[error(
        "two IPv6 addresses ({0} and {1}); a prison has at most one IPv4 and one IPv6 address"
    )]
    TwoV6(Ipv6Addr, Ipv6Addr),
    #[error(
        "{0} is a wildcard address; the prison needs one real address (refused in PARANOID builds)"
    )]
    Wildcard(IpAddr),
    #[error("{0} is a multicast or broadcast address, which no socket can use as its source")]
    NotUnicast(IpAddr),
    #[error("{0} is an IPv4-mapped IPv6 address; write the IPv4 address {1} instead")]
    Mapped(Ipv6Addr, Ipv4Addr),
}

/// The prison's addresses. Both `None` means PrisonIP is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrisonIp {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl PrisonIp {
    /// Parses one or two addresses. `refuse_wildcard` is PARANOID's `0.0.0.0`/`::` check.
    pub fn parse(addrs: &[&str], refuse_wildcard: bool) -> Result<Self, IpError> {
        let mut ip = Self::default();
        for text in addrs {
            let addr: IpAddr = text
                .trim()
                .parse()
                .map_err(|_| IpError::NotAnAddress((*text).to_owned()))?;
            if refuse_wildcard && addr.is_unspecified() {
                return Err(IpError::Wildcard(addr));
            }
            match addr {
                IpAddr::V4(v4) => {
                    if v4.is_multicast() || v4.is_broadcast() {
                        return Err(IpError::NotUnicast(addr));
                    }
                    if let Some(old) = ip.v4.replace(v4) {
                        return Err(IpError::TwoV4(old, v4));
                    }
                }
                IpAddr::V6(v6) => {
                    if v6.is_multicast() {
                        return Err(IpError::NotUnicast(addr));
                    }
                    if let Some(v4) = v6.to_ipv4_mapped() {
                        return Err(IpError::Mapped(v6, v4));
                    }
                    if let Some(old) = ip.v6.replace(v6) {
                        return Err(IpError::TwoV6(old, v6));
                    }
                }
            }
        }
        Ok(ip)
    }

    pub fn is_set(&self) -> bool {
        self.v4.is_some() || self.v6.is_some()
    }

    /// The config-time warning for a loopback address (`127.0.0.0/8`, `::1`), which is
    /// accepted but gives the prison the host's whole loopback: every service listening there.
    /// Not for a prison with PrisonConnect, which reaches only the loopback services it lists.
    pub fn loopback_warning(&self) -> Option<String> {
        let loopback: Vec<String> = self
            .v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
            .filter(IpAddr::is_loopback)
            .map(|addr| addr.to_string())
            .collect();
        if loopback.is_empty() {
            return None;
        }
        let (what, addrs) = match loopback.len() {
            1 => ("is a loopback address", loopback[0].clone()),
            _ => ("are loopback addresses", loopback.join(" and ")),
        };
        Some(format!(
            "{addrs} {what}: the prison shares the host's loopback, and its scripts can reach \
             every local service listening there (databases, caches, admin interfaces); PrisonIP \
             does not restrict destinations. List the ones it needs with PrisonConnect, give the \
             prison an address of its own, or leave PrisonIP unset and reach local services \
             through their unix sockets (PrisonBind)"
        ))
    }
}
