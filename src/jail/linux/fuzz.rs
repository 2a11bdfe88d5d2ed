//! Fuzzing only (feature `fuzzing`): PrisonConnect's programs run in the test interpreter
//! against a plain model of what they must decide, for `fuzz/fuzz_targets/prison_connect.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::bpf_interp::{Machine, MAP_FD};
use super::sockaddr::{
    programs, Connect, ATTACH_INET4_CONNECT, ATTACH_INET6_CONNECT, ATTACH_UDP4_SENDMSG,
    ATTACH_UDP6_SENDMSG,
};
use crate::config::{Destination, PrisonIp};

/// The prison addresses the programs are compiled for.
pub const JIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const JIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// What the programs must decide for `dst:port`: allowed (and the destination it goes to), or
/// refused. A loopback destination matches only loopback entries, else becomes the prison's
/// address; IPv4-mapped IPv6 is refused.
pub fn model(list: &[Destination], dst: IpAddr, port: u16) -> Option<IpAddr> {
    let listed = |addr: IpAddr, loopback: bool| {
        list.iter()
            .any(|d| d.network.is_loopback() == loopback && d.matches(addr, port))
    };
    let (is_loopback, jip) = match dst {
        IpAddr::V4(a) => (a.is_unspecified() || a.is_loopback(), IpAddr::V4(JIP4)),
        IpAddr::V6(a) => {
            if a.to_ipv4_mapped().is_some() {
                return None;
            }
            (a.is_unspecified() || a.is_loopback(), IpAddr::V6(JIP6))
        }
    };
    if is_loopback {
        if listed(dst, true) {
            return Some(dst);
        }
        return listed(jip, false).then_some(jip);
    }
    listed(dst, false).then_some(dst)
}

/// Runs the connect and sendmsg programs of `dst`'s family for `dst:port`; panics (the fuzzer's
/// finding) if the interpreter refuses an instruction or a program disagrees with [`model`].
pub fn check(list: &[Destination], dst: IpAddr, port: u16) {
    let ip = PrisonIp {
        v4: Some(JIP4),
        v6: Some(JIP6),
    };
    let connect = Connect {
        list,
        counter: MAP_FD,
    };
    let hooks = match dst {
        IpAddr::V4(_) => [ATTACH_INET4_CONNECT, ATTACH_UDP4_SENDMSG],
        IpAddr::V6(_) => [ATTACH_INET6_CONNECT, ATTACH_UDP6_SENDMSG],
    };
    let expected = model(list, dst, port);
    for program in programs(&ip, Some(&connect))
        .into_iter()
        .filter(|p| hooks.contains(&p.attach_type))
    {
        let mut m = Machine::sock_addr();
        let (at, bytes) = match dst {
            IpAddr::V4(a) => (4, a.octets().to_vec()),
            IpAddr::V6(a) => (8, a.octets().to_vec()),
        };
        Machine::set(&mut m.ctx, at, &bytes);
        let p = port.to_be_bytes();
        Machine::set(&mut m.ctx, 24, &[p[0], p[1], 0, 0]);
        let allowed = m.run(&program.insns);
        let after = Machine::get(&m.ctx, at, bytes.len());
        let after = match dst {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(after).unwrap_or_default(),
            )),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(after).unwrap_or_default(),
            )),
        };
        let got = allowed.then_some(after);
        assert_eq!(got, expected, "{} for {dst} port {port}", program.name);
        assert_eq!(m.counter, u64::from(!allowed), "{} counted", program.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_entries, ConnectEntry};

    /// The model and the programs agree on a few hand-picked cases (the fuzz target does the
    /// rest); run with `cargo test --lib --features fuzzing`.
    #[test]
    fn the_programs_agree_with_the_model() {
        let words = [
            "192.0.2.30:3306",
            "127.0.0.1:5432",
            "192.0.2.10:80",
            "[2001:db8::/64]:443",
            "[::1]:53",
            "0.0.0.0/0:9",
        ];
        let list: Vec<Destination> = parse_entries(&words, &[])
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                ConnectEntry::Destination(d) => Some(d),
                _ => None,
            })
            .collect();
        for (dst, port) in [
            ("192.0.2.30", 3306),
            ("192.0.2.30", 3307),
            ("127.0.0.1", 5432),
            ("127.0.0.1", 80),
            ("127.0.0.1", 9),
            ("0.0.0.0", 80),
            ("198.51.100.1", 9),
            ("2001:db8::5", 443),
            ("::1", 53),
            ("::1", 443),
            ("::ffff:192.0.2.30", 3306),
        ] {
            check(&list, dst.parse().unwrap(), port);
        }
    }
}
