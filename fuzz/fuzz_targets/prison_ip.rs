//! PrisonIP: no panic; accepted addresses are at most one per family, unicast, not
//! IPv4-mapped, and never the wildcard when PARANOID asks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_prison::config::PrisonIp;

fuzz_target!(|input: (bool, Vec<&str>)| {
    let (paranoid, words) = input;
    if words.is_empty() || words.len() > 2 {
        return; // httpd's TAKE12 passes one or two words
    }
    if let Ok(ip) = PrisonIp::parse(&words, paranoid) {
        assert!(ip.is_set(), "{words:?}");
        if let Some(v4) = ip.v4 {
            assert!(!v4.is_multicast() && !v4.is_broadcast(), "{words:?}");
            assert!(!(paranoid && v4.is_unspecified()), "{words:?}");
        }
        if let Some(v6) = ip.v6 {
            assert!(
                !v6.is_multicast() && v6.to_ipv4_mapped().is_none(),
                "{words:?}"
            );
            assert!(!(paranoid && v6.is_unspecified()), "{words:?}");
        }
    }
});
