//! PrisonConnect on FreeBSD, as a plan only: jails have no destination filter of their own,
//! and mod_prison loads no firewall rules (the directive is refused at `apachectl -t`, see
//! docs/freebsd.md). What an admin can load instead is this: `ipfw` rules keyed on the jail
//! (`jail JID` matches packets of the jail's sockets), generated here as argument vectors, pure
//! and tested on every platform, so the documented rules are the ones the tests check.
//!
//! The rules, all under one rule number (`ipfw delete N` removes them together):
//! - per destination, `allow tcp … setup jail JID out` (a new connection: a SYN without ACK)
//!   and `allow udp … jail JID out`;
//! - then `deny log tcp from any to any setup jail JID out` and the same for UDP: every other
//!   connection and datagram is refused (the sender gets EACCES), and counted (`ipfw show N`).
//!
//! Only `setup` packets of TCP are matched, so the jail's answers on accepted connections (its
//! Listen sockets) pass. Loopback entries: a jail's 127.0.0.1 and ::1 are its own address (the
//! kernel rewrites them), so the host's loopback is out of reach whatever the list says; such an
//! entry becomes the jail's own address, which is where those connections go.

use crate::config::{Destination, Network, PrisonIp};

/// The ipfw invocations (arguments after `ipfw`) that enforce `list` for the jail `jid`, all
/// under rule number `rule`.
pub fn ipfw_rules(rule: u16, jid: i32, ip: &PrisonIp, list: &[Destination]) -> Vec<Vec<String>> {
    let tail = |proto: &str| -> Vec<String> {
        let mut words = Vec::new();
        if proto == "tcp" {
            words.push("setup".to_owned());
        }
        words.extend(["jail".to_owned(), jid.to_string(), "out".to_owned()]);
        words
    };
    let head = |action: &[&str], proto: &str| -> Vec<String> {
        let mut words = vec!["-q".to_owned(), "add".to_owned(), rule.to_string()];
        words.extend(action.iter().map(|w| (*w).to_owned()));
        words.push(proto.to_owned());
        words
    };
    let mut rules = Vec::new();
    for d in list {
        let Some(to) = target(d, ip) else {
            continue;
        };
        for proto in ["tcp", "udp"] {
            let mut words = head(&["allow"], proto);
            words.extend(["from".to_owned(), "any".to_owned(), "to".to_owned()]);
            words.push(to.clone());
            if let Some(p) = d.ports {
                words.push(if p.first == p.last {
                    p.first.to_string()
                } else {
                    format!("{}-{}", p.first, p.last)
                });
            }
            words.extend(tail(proto));
            rules.push(words);
        }
    }
    for proto in ["tcp", "udp"] {
        let mut words = head(&["deny", "log"], proto);
        words.extend(["from", "any", "to", "any"].map(str::to_owned));
        words.extend(tail(proto));
        rules.push(words);
    }
    rules
}

/// The arguments that remove every rule of [`ipfw_rules`].
pub fn ipfw_delete(rule: u16) -> Vec<String> {
    vec!["-q".to_owned(), "delete".to_owned(), rule.to_string()]
}

/// The address or network a destination means from inside the jail: a loopback entry is the
/// jail's own address of that family (none: the entry can match nothing and is left out).
fn target(d: &Destination, ip: &PrisonIp) -> Option<String> {
    match d.network {
        Network::V4(..) if d.network.is_loopback() => ip.v4.map(|a| a.to_string()),
        Network::V6(..) if d.network.is_loopback() => ip.v6.map(|a| a.to_string()),
        Network::V4(a, 32) => Some(a.to_string()),
        Network::V6(a, 128) => Some(a.to_string()),
        Network::V4(a, p) => Some(format!("{a}/{p}")),
        Network::V6(a, p) => Some(format!("{a}/{p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConnectEntry;

    fn list(words: &[&str]) -> Vec<Destination> {
        words
            .iter()
            .map(|w| match ConnectEntry::parse(w) {
                Ok(ConnectEntry::Destination(d)) => d,
                other => panic!("{w}: {other:?}"),
            })
            .collect()
    }

    fn text(rules: &[Vec<String>]) -> Vec<String> {
        rules.iter().map(|r| r.join(" ")).collect()
    }

    #[test]
    fn every_destination_is_allowed_for_tcp_and_udp_then_the_rest_denied() {
        let ip = PrisonIp::parse(&["192.0.2.7", "2001:db8::7"], false).unwrap();
        let rules = ipfw_rules(
            5000,
            12,
            &ip,
            &list(&[
                "192.0.2.10:3306",
                "198.51.100.0/24:1000-2000",
                "[2001:db8:1::/48]:443",
                "2001:db8::53",
            ]),
        );
        assert_eq!(
            text(&rules),
            [
                "-q add 5000 allow tcp from any to 192.0.2.10 3306 setup jail 12 out",
                "-q add 5000 allow udp from any to 192.0.2.10 3306 jail 12 out",
                "-q add 5000 allow tcp from any to 198.51.100.0/24 1000-2000 setup jail 12 out",
                "-q add 5000 allow udp from any to 198.51.100.0/24 1000-2000 jail 12 out",
                "-q add 5000 allow tcp from any to 2001:db8:1::/48 443 setup jail 12 out",
                "-q add 5000 allow udp from any to 2001:db8:1::/48 443 jail 12 out",
                "-q add 5000 allow tcp from any to 2001:db8::53 setup jail 12 out",
                "-q add 5000 allow udp from any to 2001:db8::53 jail 12 out",
                "-q add 5000 deny log tcp from any to any setup jail 12 out",
                "-q add 5000 deny log udp from any to any jail 12 out",
            ]
        );
        assert_eq!(ipfw_delete(5000).join(" "), "-q delete 5000");
    }

    #[test]
    fn none_is_the_two_deny_rules() {
        let ip = PrisonIp::parse(&["192.0.2.7"], false).unwrap();
        assert_eq!(
            text(&ipfw_rules(100, 3, &ip, &[])),
            [
                "-q add 100 deny log tcp from any to any setup jail 3 out",
                "-q add 100 deny log udp from any to any jail 3 out",
            ]
        );
    }

    /// A jail's loopback is its own address: a loopback entry means that, or nothing.
    #[test]
    fn a_loopback_entry_is_the_jails_own_address() {
        let both = PrisonIp::parse(&["192.0.2.7", "2001:db8::7"], false).unwrap();
        let rules = ipfw_rules(1, 2, &both, &list(&["127.0.0.1:5432", "[::1]:53"]));
        assert_eq!(
            rules[0].join(" "),
            "-q add 1 allow tcp from any to 192.0.2.7 5432 setup jail 2 out"
        );
        assert_eq!(
            rules[2].join(" "),
            "-q add 1 allow tcp from any to 2001:db8::7 53 setup jail 2 out"
        );
        let v4 = PrisonIp::parse(&["192.0.2.7"], false).unwrap();
        assert_eq!(ipfw_rules(1, 2, &v4, &list(&["[::1]:53"])).len(), 2);
    }

    #[test]
    fn every_rule_is_under_the_one_number_and_keyed_on_the_jail() {
        let ip = PrisonIp::parse(&["192.0.2.7"], false).unwrap();
        for rule in ipfw_rules(65000, 99, &ip, &list(&["0.0.0.0/0:443", "192.0.2.0/24"])) {
            assert_eq!(&rule[..3], ["-q", "add", "65000"]);
            let at = rule.iter().position(|w| w == "jail").expect("jail");
            assert_eq!(&rule[at..], ["jail", "99", "out"]);
            assert_eq!(
                rule.contains(&"setup".to_owned()),
                rule.contains(&"tcp".to_owned())
            );
        }
    }
}
