//! PrisonConnect: no panic; every accepted destination prints in a form that parses back to
//! itself; the accepted list compiles into connect and sendmsg programs the interpreter runs
//! (it refuses anything the verifier would) and whose verdict, for a destination and port taken
//! from the input, is the model's: listed or refused, the host's loopback only through a
//! loopback entry, IPv4-mapped refused.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mod_prison::config::{parse_entries, ConnectEntry, Network};
use mod_prison::jail::fuzz;

fuzz_target!(|input: (Vec<&str>, [u8; 16], u16, bool)| {
    let (words, addr, port, v6) = input;
    if words.is_empty() || words.len() > 32 || words.iter().any(|w| w.contains('\0')) {
        return; // httpd's ITERATE passes NUL-free words; keep the programs small
    }
    let Ok(entries) = parse_entries(&words, &[]) else {
        return;
    };
    let mut list = Vec::new();
    for entry in &entries {
        let text = entry.to_string();
        assert_eq!(ConnectEntry::parse(&text).as_ref(), Ok(entry), "{text}");
        if let ConnectEntry::Destination(d) = entry {
            list.push(*d);
        }
    }
    let dst = if v6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    // Aim at the list now and then (its first address), so "allowed" paths are reached too.
    let dst = match list.first() {
        Some(d) if addr[15] & 1 == 1 => match d.network {
            Network::V4(a, _) => IpAddr::V4(a),
            Network::V6(a, _) => IpAddr::V6(a),
        },
        _ => dst,
    };
    fuzz::check(&list, dst, port);
});
