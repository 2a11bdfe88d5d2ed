//! The directive parsers, table by table: every accepted form with the value it gives, every
//! refused form with the exact text the admin reads after httpd's "Syntax error on line N".
//! Pure code, no httpd; the few real-directory cases use temp dirs and work as any user.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mod_prison::config::{
    check_ancestor_facts, check_facts, check_prison_dir, parse_size, ConfigError, CpuListError,
    CpuSet, DirError, DirFacts, Directives, HostConfig, IpError, MemoryError, MemoryLimits,
    NameError, PrisonIp, PrisonName, ProcessesError, Security, SecurityError, MAX_CPU_ID,
    MAX_NAME_LEN, PARANOID,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

fn cpus(list: &str) -> CpuSet {
    CpuSet::parse(list).unwrap_or_else(|e| panic!("{list:?} should parse: {e}"))
}

// ---------------------------------------------------------------------------------------------
// PrisonCPU

#[test]
fn cpu_lists_accepted() {
    // (as written, the CPUs it means)
    let table: &[(&str, &[u32])] = &[
        ("1", &[1]),
        ("0", &[0]),
        ("1,2,6", &[1, 2, 6]),
        ("8-10", &[8, 9, 10]),
        ("0,2-3", &[0, 2, 3]),
        ("3-3", &[3]),
        ("6,2,1", &[1, 2, 6]),
        ("1,1,1-2", &[1, 2]),
        ("0-2,1-3", &[0, 1, 2, 3]),
        (" 1 , 2 ", &[1, 2]),
        ("1 - 3", &[1, 2, 3]),
        ("007", &[7]),
        ("1023", &[MAX_CPU_ID]),
    ];
    for &(text, want) in table {
        let got: Vec<u32> = cpus(text).iter().collect();
        assert_eq!(got, want, "PrisonCPU {text:?}");
    }
}

#[test]
fn cpu_lists_refused() {
    use CpuListError::*;
    let table: &[(&str, CpuListError, &str)] = &[
        (
            "",
            Empty,
            "empty CPU list; write e.g. 1, 1,2,6, 8-10 or 0,2-3",
        ),
        (
            "  ",
            Empty,
            "empty CPU list; write e.g. 1, 1,2,6, 8-10 or 0,2-3",
        ),
        (
            "1,,2",
            EmptyItem("1,,2".into()),
            "empty item in CPU list \"1,,2\" (stray comma?)",
        ),
        (
            ",1",
            EmptyItem(",1".into()),
            "empty item in CPU list \",1\" (stray comma?)",
        ),
        (
            "1,",
            EmptyItem("1,".into()),
            "empty item in CPU list \"1,\" (stray comma?)",
        ),
        ("a", NotANumber("a".into()), "\"a\" is not a CPU number"),
        ("1-x", NotANumber("x".into()), "\"x\" is not a CPU number"),
        ("+1", NotANumber("+1".into()), "\"+1\" is not a CPU number"),
        ("-1", NotANumber("".into()), "\"\" is not a CPU number"),
        ("1-", NotANumber("".into()), "\"\" is not a CPU number"),
        (
            "1-2-3",
            NotANumber("2-3".into()),
            "\"2-3\" is not a CPU number",
        ),
        (
            "0x1",
            NotANumber("0x1".into()),
            "\"0x1\" is not a CPU number",
        ),
        (
            "1;2",
            NotANumber("1;2".into()),
            "\"1;2\" is not a CPU number",
        ),
        (
            "1 2",
            NotANumber("1 2".into()),
            "\"1 2\" is not a CPU number",
        ),
        ("３", NotANumber("３".into()), "\"３\" is not a CPU number"),
        ("3-1", Reversed(3, 1), "reversed range 3-1; write 1-3"),
        ("0,10-8", Reversed(10, 8), "reversed range 10-8; write 8-10"),
        (
            "1024",
            TooLarge("1024".into()),
            "CPU 1024 is above the largest supported id 1023",
        ),
        (
            "0-4096",
            TooLarge("4096".into()),
            "CPU 4096 is above the largest supported id 1023",
        ),
        // Beyond u32: the message still names the number as written.
        (
            "99999999999",
            TooLarge("99999999999".into()),
            "CPU 99999999999 is above the largest supported id 1023",
        ),
    ];
    for (text, want, message) in table {
        let got = CpuSet::parse(text).expect_err(&format!("PrisonCPU {text:?} must be refused"));
        assert_eq!(&got, want, "PrisonCPU {text:?}");
        assert_eq!(got.to_string(), *message, "PrisonCPU {text:?}");
    }
}

#[test]
fn cpu_set_display_is_canonical_and_round_trips() {
    // Runs of three or more collapse to a range, pairs stay a pair, order and duplicates go.
    let table = [
        ("1", "1"),
        ("1,2", "1,2"),
        ("0-1", "0,1"),
        ("8-10", "8-10"),
        ("8,9,10", "8-10"),
        ("1,2,6", "1,2,6"),
        ("0,2-3", "0,2,3"),
        ("0-2,4,6-7", "0-2,4,6,7"),
        ("5,1,3", "1,3,5"),
        ("3,2,1,0,9,8,7", "0-3,7-9"),
        ("1,1,1", "1"),
        ("0-1023", "0-1023"),
    ];
    for (text, want) in table {
        let set = cpus(text);
        assert_eq!(set.to_string(), want, "display of {text:?}");
        assert_eq!(cpus(want), set, "{want:?} must parse back to the same set");
    }
    assert_eq!(CpuSet::default().to_string(), "");
    assert!(CpuSet::default().is_empty());
    assert_eq!(cpus("0-3,8").len(), 5);
    assert_eq!([4, 2, 3].into_iter().collect::<CpuSet>(), cpus("2-4"));
}

#[test]
fn cpu_sets_must_be_online() {
    let two = cpus("0-1");
    let four = cpus("0-3");
    let sparse = cpus("0,2,4-7");
    let table: &[(&str, &CpuSet, Option<&str>)] = &[
        ("0", &two, None),
        ("0-1", &two, None),
        ("1,0", &two, None),
        (
            "2",
            &two,
            Some("CPU 2 does not exist on this machine (it has CPUs 0,1)"),
        ),
        (
            "8-10",
            &two,
            Some("CPU 8 does not exist on this machine (it has CPUs 0,1)"),
        ),
        (
            "2-5",
            &four,
            Some("CPU 4 does not exist on this machine (it has CPUs 0-3)"),
        ),
        ("4-7,0", &sparse, None),
        (
            "0-2",
            &sparse,
            Some("CPU 1 does not exist on this machine (it has CPUs 0,2,4-7)"),
        ),
    ];
    for &(text, online, want) in table {
        let got = cpus(text).check_within(online);
        match want {
            None => assert_eq!(got, Ok(()), "{text:?} within {online}"),
            Some(message) => {
                let err = got.expect_err(&format!("{text:?} is not within {online}"));
                assert!(matches!(err, CpuListError::NotOnline { .. }), "{err:?}");
                assert_eq!(err.to_string(), message, "{text:?} within {online}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PrisonMemory

#[test]
fn sizes_accepted() {
    let table = [
        ("0", 0),
        ("1", 1),
        ("512", 512),
        ("0k", 0),
        ("1k", KIB),
        ("1K", KIB),
        ("64k", 64 * KIB),
        ("2m", 2 * MIB),
        ("2M", 2 * MIB),
        ("512M", 512 * MIB),
        ("3g", 3 * GIB),
        ("3G", 3 * GIB),
        ("1t", TIB),
        ("1T", TIB),
        ("0010M", 10 * MIB),
        // The largest size is i64::MAX bytes, what the kernels' limit files hold.
        ("9223372036854775807", i64::MAX as u64),
        ("8388607T", 8_388_607 * TIB),
        ("9007199254740991k", 9_007_199_254_740_991 * KIB),
    ];
    for (text, want) in table {
        assert_eq!(parse_size(text), Ok(want), "size {text:?}");
    }
}

#[test]
fn sizes_refused() {
    let not_a_size = |t: &str| {
        (
            t.to_owned(),
            MemoryError::NotASize(t.to_owned()),
            format!("{t:?} is not a size; write bytes, or a number with k, M, G or T (e.g. 512M); 0 means no limit"),
        )
    };
    let too_large = |t: &str| {
        (
            t.to_owned(),
            MemoryError::TooLarge(t.to_owned()),
            format!("{t:?} is too large"),
        )
    };
    let table = [
        not_a_size(""),
        not_a_size("k"),
        not_a_size("M"),
        not_a_size("1.5G"),
        not_a_size("-1"),
        not_a_size("+1"),
        not_a_size(" 1"),
        not_a_size("1 "),
        not_a_size("1 G"),
        not_a_size("1KB"),
        not_a_size("1kk"),
        not_a_size("1P"),
        not_a_size("1b"),
        not_a_size("0x10"),
        not_a_size("1e3"),
        not_a_size("１"),
        not_a_size("1é"),
        not_a_size("none"),
        // Past i64::MAX bytes, by the multiplication or already by the number.
        too_large("9223372036854775808"),
        too_large("8388608T"),
        too_large("9007199254740992k"),
        too_large("18446744073709551615"),
        too_large("18446744073709551616"),
        too_large("99999999999999999999999G"),
    ];
    for (text, want, message) in table {
        let got = parse_size(&text).expect_err(&format!("size {text:?} must be refused"));
        assert_eq!(got, want, "size {text:?}");
        assert_eq!(got.to_string(), message, "size {text:?}");
    }
}

#[test]
fn memory_limits() {
    let limits = |report, deny| MemoryLimits { report, deny };
    let accepted = [
        (("0", "0"), limits(None, None)),
        (("100M", "1G"), limits(Some(100 * MIB), Some(GIB))),
        (("1G", "1G"), limits(Some(GIB), Some(GIB))),
        // deny 0 is "no limit", so any report threshold is below it.
        (("1T", "0"), limits(Some(TIB), None)),
        (("0", "512M"), limits(None, Some(512 * MIB))),
        (("1", "1k"), limits(Some(1), Some(KIB))),
    ];
    for ((report, deny), want) in accepted {
        assert_eq!(
            MemoryLimits::parse(report, deny),
            Ok(want),
            "PrisonMemory {report} {deny}"
        );
    }
    assert_eq!(limits(None, None), MemoryLimits::default());

    let refused = [
        (
            ("2G", "1G"),
            "report threshold 2147483648 is above the deny limit 1073741824; report must be at most deny (or deny 0 for no limit)",
        ),
        (
            ("1025", "1k"),
            "report threshold 1025 is above the deny limit 1024; report must be at most deny (or deny 0 for no limit)",
        ),
        (("lots", "1G"), "\"lots\" is not a size; write bytes, or a number with k, M, G or T (e.g. 512M); 0 means no limit"),
        (("1G", "lots"), "\"lots\" is not a size; write bytes, or a number with k, M, G or T (e.g. 512M); 0 means no limit"),
        (("1G", "8388608T"), "\"8388608T\" is too large"),
    ];
    for ((report, deny), message) in refused {
        let err = MemoryLimits::parse(report, deny)
            .expect_err(&format!("PrisonMemory {report} {deny} must be refused"));
        assert_eq!(err.to_string(), message, "PrisonMemory {report} {deny}");
    }
    assert_eq!(
        MemoryLimits::parse("2G", "1G"),
        Err(MemoryError::ReportAboveDeny {
            report: 2 * GIB,
            deny: GIB
        })
    );
}

// ---------------------------------------------------------------------------------------------
// PrisonIP

#[test]
fn ip_addresses_accepted() {
    let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
    let v6 = |s: &str| Some(s.parse::<Ipv6Addr>().unwrap());
    let table: &[(&[&str], Option<Ipv4Addr>, Option<Ipv6Addr>)] = &[
        (&["192.0.2.1"], v4("192.0.2.1"), None),
        (&["2001:db8::1"], None, v6("2001:db8::1")),
        (
            &["192.0.2.1", "2001:db8::1"],
            v4("192.0.2.1"),
            v6("2001:db8::1"),
        ),
        (
            &["2001:db8::1", "192.0.2.1"],
            v4("192.0.2.1"),
            v6("2001:db8::1"),
        ),
        (&["127.0.0.1"], v4("127.0.0.1"), None),
        (&["::1"], None, v6("::1")),
        (&[" 10.0.0.7 "], v4("10.0.0.7"), None),
        (&["fe80::1"], None, v6("fe80::1")),
        (&["2001:DB8:0:0:0:0:0:2"], None, v6("2001:db8::2")),
    ];
    for &(args, want_v4, want_v6) in table {
        for refuse_wildcard in [true, false] {
            let ip = PrisonIp::parse(args, refuse_wildcard)
                .unwrap_or_else(|e| panic!("PrisonIP {args:?}: {e}"));
            assert_eq!((ip.v4, ip.v6), (want_v4, want_v6), "PrisonIP {args:?}");
            assert!(ip.is_set());
        }
    }
    let unset = PrisonIp::parse(&[], true).unwrap();
    assert_eq!(unset, PrisonIp::default());
    assert!(!unset.is_set());
}

#[test]
fn ip_loopback_is_accepted_with_a_warning() {
    const TAIL: &str = ": the prison shares the host's loopback, and its scripts can reach \
        every local service listening there (databases, caches, admin interfaces); PrisonIP \
        does not restrict destinations. List the ones it needs with PrisonConnect, give the \
        prison an address of its own, or leave PrisonIP unset and reach local services \
        through their unix sockets (PrisonBind)";
    let table: &[(&[&str], Option<String>)] = &[
        (
            &["127.0.0.1"],
            Some(format!("127.0.0.1 is a loopback address{TAIL}")),
        ),
        (
            &["127.1.2.3"],
            Some(format!("127.1.2.3 is a loopback address{TAIL}")),
        ),
        (&["::1"], Some(format!("::1 is a loopback address{TAIL}"))),
        (
            &["192.0.2.1", "::1"],
            Some(format!("::1 is a loopback address{TAIL}")),
        ),
        (
            &["::1", "127.0.0.1"],
            Some(format!("127.0.0.1 and ::1 are loopback addresses{TAIL}")),
        ),
        // Negative controls: addresses of the prison's own, and no PrisonIP at all.
        (&["192.0.2.1", "2001:db8::1"], None),
        (&["128.0.0.1"], None),
        (&["126.255.255.255"], None),
        (&["::2"], None),
        (&["0.0.0.0"], None),
        (&[], None),
    ];
    for (args, want) in table {
        let ip = PrisonIp::parse(args, false).unwrap_or_else(|e| panic!("PrisonIP {args:?}: {e}"));
        assert_eq!(&ip.loopback_warning(), want, "PrisonIP {args:?}");
    }
}

#[test]
fn ip_wildcards_refused_only_when_paranoid() {
    for (text, message) in [
        (
            "0.0.0.0",
            "0.0.0.0 is a wildcard address; the prison needs one real address (refused in PARANOID builds)",
        ),
        (
            "::",
            ":: is a wildcard address; the prison needs one real address (refused in PARANOID builds)",
        ),
    ] {
        let err = PrisonIp::parse(&[text], true).expect_err(text);
        assert_eq!(err, IpError::Wildcard(text.parse().unwrap()));
        assert_eq!(err.to_string(), message);
        let ip = PrisonIp::parse(&[text], false).expect(text);
        assert!(ip.is_set(), "{text} accepted without PARANOID");
    }
}

#[test]
fn ip_addresses_refused() {
    let table: &[(&[&str], &str)] = &[
        (
            &["example.com"],
            "could not make sense of \"example.com\" as an IPv4 or IPv6 address",
        ),
        (
            &["192.0.2.1/24"],
            "could not make sense of \"192.0.2.1/24\" as an IPv4 or IPv6 address",
        ),
        (
            &["192.0.2"],
            "could not make sense of \"192.0.2\" as an IPv4 or IPv6 address",
        ),
        (&[""], "could not make sense of \"\" as an IPv4 or IPv6 address"),
        (
            &["fe80::1%eth0"],
            "could not make sense of \"fe80::1%eth0\" as an IPv4 or IPv6 address",
        ),
        (
            &["[2001:db8::1]"],
            "could not make sense of \"[2001:db8::1]\" as an IPv4 or IPv6 address",
        ),
        (
            &["192.0.2.1", "bogus"],
            "could not make sense of \"bogus\" as an IPv4 or IPv6 address",
        ),
        (
            &["224.0.0.1"],
            "224.0.0.1 is a multicast or broadcast address, which no socket can use as its source",
        ),
        (
            &["239.255.255.250"],
            "239.255.255.250 is a multicast or broadcast address, which no socket can use as its source",
        ),
        (
            &["255.255.255.255"],
            "255.255.255.255 is a multicast or broadcast address, which no socket can use as its source",
        ),
        (
            &["ff02::1"],
            "ff02::1 is a multicast or broadcast address, which no socket can use as its source",
        ),
        (
            &["::ffff:192.0.2.1"],
            "::ffff:192.0.2.1 is an IPv4-mapped IPv6 address; write the IPv4 address 192.0.2.1 instead",
        ),
        (
            &["::ffff:0.0.0.0"],
            "::ffff:0.0.0.0 is an IPv4-mapped IPv6 address; write the IPv4 address 0.0.0.0 instead",
        ),
        (
            &["192.0.2.1", "192.0.2.2"],
            "two IPv4 addresses (192.0.2.1 and 192.0.2.2); a prison has at most one IPv4 and one IPv6 address",
        ),
        (
            &["192.0.2.1", "192.0.2.1"],
            "two IPv4 addresses (192.0.2.1 and 192.0.2.1); a prison has at most one IPv4 and one IPv6 address",
        ),
        (
            &["2001:db8::1", "2001:db8::2"],
            "two IPv6 addresses (2001:db8::1 and 2001:db8::2); a prison has at most one IPv4 and one IPv6 address",
        ),
    ];
    for &(args, message) in table {
        for refuse_wildcard in [true, false] {
            let err = PrisonIp::parse(args, refuse_wildcard)
                .expect_err(&format!("PrisonIP {args:?} must be refused"));
            assert_eq!(err.to_string(), message, "PrisonIP {args:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PrisonName

#[test]
fn names_accepted() {
    let long = "x".repeat(MAX_NAME_LEN);
    for text in [
        "www",
        "plop_rmdir_fr",
        "a-b",
        "A1",
        "_",
        "x",
        "1a",
        "a1",
        "0-1",
        "_1",
        long.as_str(),
    ] {
        let name = PrisonName::parse(text).unwrap_or_else(|e| panic!("PrisonName {text:?}: {e}"));
        assert_eq!(name.as_str(), text);
        assert_eq!(name.to_string(), text);
    }
}

#[test]
fn names_refused() {
    use NameError::*;
    let too_long = "x".repeat(MAX_NAME_LEN + 1);
    let table = [
        ("", Empty, "empty name".to_owned()),
        (
            "a b",
            BadCharacter("a b".into()),
            "\"a b\" has characters other than letters, digits, '_' and '-'".to_owned(),
        ),
        (
            "a.b",
            BadCharacter("a.b".into()),
            "\"a.b\" has characters other than letters, digits, '_' and '-'".to_owned(),
        ),
        (
            "a/b",
            BadCharacter("a/b".into()),
            "\"a/b\" has characters other than letters, digits, '_' and '-'".to_owned(),
        ),
        (
            "café",
            BadCharacter("café".into()),
            "\"café\" has characters other than letters, digits, '_' and '-'".to_owned(),
        ),
        (
            "a\nb",
            BadCharacter("a\nb".into()),
            "\"a\\nb\" has characters other than letters, digits, '_' and '-'".to_owned(),
        ),
        (
            too_long.as_str(),
            TooLong(too_long.clone()),
            format!("{too_long:?} is longer than 64 characters"),
        ),
        (
            "123",
            Numeric("123".into()),
            "\"123\" is all digits, which FreeBSD would read as a jail id".to_owned(),
        ),
        (
            "0",
            Numeric("0".into()),
            "\"0\" is all digits, which FreeBSD would read as a jail id".to_owned(),
        ),
        (
            "-a",
            LeadingDash("-a".into()),
            "\"-a\" starts with '-', which tools would read as an option".to_owned(),
        ),
        (
            "-1",
            LeadingDash("-1".into()),
            "\"-1\" starts with '-', which tools would read as an option".to_owned(),
        ),
    ];
    for (text, want, message) in table {
        let err = PrisonName::parse(text).expect_err(&format!("PrisonName {text:?}"));
        assert_eq!(err, want, "PrisonName {text:?}");
        assert_eq!(err.to_string(), message, "PrisonName {text:?}");
    }
}

#[test]
fn names_from_server_name() {
    let table: &[(&str, Result<&str, NameError>)] = &[
        ("plop.rmdir.fr", Ok("plop_rmdir_fr")),
        ("localhost", Ok("localhost")),
        ("www-1.example.org", Ok("www-1_example_org")),
        ("127.0.0.1", Ok("127_0_0_1")),
        ("[::1]", Ok("___1_")),
        ("bücher.de", Ok("b_cher_de")),
        ("host:8080", Ok("host_8080")),
        ("", Err(NameError::Empty)),
        ("12345", Err(NameError::Numeric("12345".into()))),
        (
            "-x.example",
            Err(NameError::LeadingDash("-x_example".into())),
        ),
    ];
    for (server_name, want) in table {
        let got = PrisonName::from_server_name(server_name);
        let got = got.as_ref().map(PrisonName::as_str).map_err(Clone::clone);
        assert_eq!(&got, want, "ServerName {server_name:?}");
    }
    let long = format!("{}.example", "a".repeat(60));
    assert!(matches!(
        PrisonName::from_server_name(&long),
        Err(NameError::TooLong(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// PrisonProcesses

#[test]
fn processes_counts() {
    use mod_prison::config::{parse_processes, MAX_PROCESSES};
    let table: &[(&str, Result<Option<u64>, ProcessesError>)] = &[
        ("0", Ok(None)),
        ("1", Ok(Some(1))),
        ("512", Ok(Some(512))),
        ("4194304", Ok(Some(MAX_PROCESSES))),
        ("4194305", Err(ProcessesError::TooLarge(4_194_305))),
        ("", Err(ProcessesError::NotACount(String::new()))),
        ("-1", Err(ProcessesError::NotACount("-1".into()))),
        ("+5", Err(ProcessesError::NotACount("+5".into()))),
        ("1k", Err(ProcessesError::NotACount("1k".into()))),
        (" 5", Err(ProcessesError::NotACount(" 5".into()))),
        (
            "99999999999999999999999",
            Err(ProcessesError::NotACount("99999999999999999999999".into())),
        ),
    ];
    for (text, want) in table {
        assert_eq!(&parse_processes(text), want, "PrisonProcesses {text:?}");
    }
    let mut d = Directives::default();
    let err = d.prison_processes("many").unwrap_err();
    assert_eq!(
        err.to_string(),
        "PrisonProcesses: \"many\" is not a count; write a whole number of processes and threads (e.g. 512), or 0 for no limit"
    );
}

// ---------------------------------------------------------------------------------------------
// PrisonSecurity

#[test]
fn security_levels() {
    let table = [
        ("None", Security::None),
        ("none", Security::None),
        ("NONE", Security::None),
        ("ALL", Security::All),
        ("all", Security::All),
        ("All", Security::All),
        ("IPC", Security::Ipc),
        ("ipc", Security::Ipc),
        ("Ipc", Security::Ipc),
    ];
    for (text, want) in table {
        assert_eq!(text.parse::<Security>(), Ok(want), "PrisonSecurity {text}");
    }
    for (level, shown) in [
        (Security::None, "None"),
        (Security::All, "ALL"),
        (Security::Ipc, "IPC"),
    ] {
        assert_eq!(level.to_string(), shown);
        assert_eq!(shown.parse::<Security>(), Ok(level), "Display parses back");
    }
    for text in ["", "ALL ", " none", "nothing", "IPC,ALL", "0", "ALLL"] {
        let err = text.parse::<Security>().expect_err(text);
        assert_eq!(err, SecurityError(text.to_owned()));
        assert_eq!(
            err.to_string(),
            format!("{text:?} is not a level; PrisonSecurity takes None, ALL or IPC")
        );
    }
    let default = if PARANOID {
        Security::All
    } else {
        Security::None
    };
    assert_eq!(Security::DEFAULT, default);
}

// ---------------------------------------------------------------------------------------------
// PrisonDir: the pure checks, then real directories

#[test]
fn dir_facts() {
    const DIR: u32 = 0o040000;
    const FILE: u32 = 0o100000;
    let facts = |is_dir, uid, mode| DirFacts { is_dir, uid, mode };
    let some = Path::new("/srv/prison");
    // (path, facts, PARANOID, expected error text or None)
    let table: &[(&Path, DirFacts, bool, Option<&str>)] = &[
        (some, facts(true, 0, DIR | 0o755), true, None),
        (some, facts(true, 0, DIR | 0o700), true, None),
        (some, facts(true, 0, DIR | 0o555), true, None),
        (some, facts(true, 0, DIR | 0o4755), true, None),
        (
            some,
            facts(true, 1000, DIR | 0o755),
            true,
            Some("\"/srv/prison\" must be owned by root (it is owned by uid 1000) in PARANOID builds"),
        ),
        (
            some,
            facts(true, 0, DIR | 0o775),
            true,
            Some("\"/srv/prison\" must not be group or world writable (mode 0775) in PARANOID builds"),
        ),
        (
            some,
            facts(true, 0, DIR | 0o757),
            true,
            Some("\"/srv/prison\" must not be group or world writable (mode 0757) in PARANOID builds"),
        ),
        (
            some,
            facts(true, 0, DIR | 0o1777),
            true,
            Some("\"/srv/prison\" must not be group or world writable (mode 1777) in PARANOID builds"),
        ),
        // Ownership is checked before the mode.
        (
            some,
            facts(true, 33, DIR | 0o777),
            true,
            Some("\"/srv/prison\" must be owned by root (it is owned by uid 33) in PARANOID builds"),
        ),
        // Without PARANOID, owner and mode are the admin's business...
        (some, facts(true, 1000, DIR | 0o777), false, None),
        // ...but a file or the host's root never are.
        (
            some,
            facts(false, 0, FILE | 0o644),
            false,
            Some("\"/srv/prison\" is not a directory"),
        ),
        (
            some,
            facts(false, 1000, FILE | 0o666),
            true,
            Some("\"/srv/prison\" is not a directory"),
        ),
        (
            Path::new("/"),
            facts(true, 0, DIR | 0o755),
            true,
            Some("\"/\" is the host's root; a prison needs a directory of its own"),
        ),
        (
            Path::new("/"),
            facts(true, 0, DIR | 0o755),
            false,
            Some("\"/\" is the host's root; a prison needs a directory of its own"),
        ),
    ];
    for &(path, facts, paranoid, want) in table {
        let got = check_facts(path, facts, paranoid).map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.map_or(Ok(()), |m| Err(m.to_owned())),
            "{path:?} {facts:?} paranoid={paranoid}"
        );
    }
}

/// A scratch directory for the real-directory cases, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "mod_prison-config-{}-{n}-{label}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let scratch = Self(path);
        scratch.chmod("", 0o755);
        scratch
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.0.clone()
        } else {
            self.0.join(rel)
        }
    }

    fn text(&self, rel: &str) -> String {
        self.path(rel)
            .to_str()
            .expect("temp paths are UTF-8")
            .to_owned()
    }

    fn mkdir(&self, rel: &str, mode: u32) -> String {
        fs::create_dir(self.path(rel)).unwrap();
        self.chmod(rel, mode);
        self.text(rel)
    }

    fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

#[test]
fn prison_dir_on_real_directories() {
    let s = Scratch::new("dir");
    // Canonical form of the scratch dir itself (temp_dir may be behind a symlink).
    let base = fs::canonicalize(s.path("")).unwrap();
    let prison = s.mkdir("prison", 0o755);
    fs::write(s.path("file"), "not a directory").unwrap();
    symlink(s.path("prison"), s.path("link")).unwrap();
    symlink("/", s.path("root-link")).unwrap();
    symlink(s.path("missing"), s.path("dangling")).unwrap();

    // Accepted, without PARANOID: the canonical path comes back.
    let ok: &[(String, PathBuf)] = &[
        (prison.clone(), base.join("prison")),
        (s.text("link"), base.join("prison")),
        (format!("{prison}/../prison/."), base.join("prison")),
        (format!("{prison}/"), base.join("prison")),
    ];
    for (text, want) in ok {
        assert_eq!(
            check_prison_dir(text, false).map_err(|e| e.to_string()),
            Ok(want.clone()),
            "PrisonDir {text}"
        );
    }

    let refused: &[(String, String)] = &[
        (
            "relative/dir".into(),
            "\"relative/dir\" is not an absolute path".into(),
        ),
        ("".into(), "\"\" is not an absolute path".into()),
        (
            "/".into(),
            "\"/\" is the host's root; a prison needs a directory of its own".into(),
        ),
        (
            "//".into(),
            "\"/\" is the host's root; a prison needs a directory of its own".into(),
        ),
        // The check is made on the resolved path: a symlink to / is the host's root.
        (
            s.text("root-link"),
            "\"/\" is the host's root; a prison needs a directory of its own".into(),
        ),
        (
            format!("{prison}/../../../../../../../.."),
            "\"/\" is the host's root; a prison needs a directory of its own".into(),
        ),
        (
            s.text("missing"),
            format!(
                "{:?} cannot be used: No such file or directory (os error 2)",
                s.path("missing")
            ),
        ),
        (
            s.text("dangling"),
            format!(
                "{:?} cannot be used: No such file or directory (os error 2)",
                s.path("dangling")
            ),
        ),
        (
            format!("{}/below", s.text("file")),
            format!(
                "{:?} cannot be used: Not a directory (os error 20)",
                s.path("file/below")
            ),
        ),
        (
            s.text("file"),
            format!("{:?} is not a directory", base.join("file")),
        ),
    ];
    for (text, message) in refused {
        for paranoid in [false, true] {
            let err = check_prison_dir(text, paranoid)
                .expect_err(&format!("PrisonDir {text:?} must be refused"));
            assert_eq!(&err.to_string(), message, "PrisonDir {text:?}");
        }
    }
    assert!(matches!(
        check_prison_dir(&s.text("missing"), false),
        Err(DirError::Unusable { .. })
    ));
}

#[test]
fn prison_dir_paranoid_owner_and_mode() {
    let s = Scratch::new("paranoid");
    let base = fs::canonicalize(s.path("")).unwrap();
    let writable = s.mkdir("group-writable", 0o775);
    let world = s.mkdir("world-writable", 0o777);
    let sticky = s.mkdir("sticky", 0o1777);
    let foreign = s.mkdir("foreign", 0o755);
    // A directory not owned by root: chown it when root, else it already is ours.
    let uid = if euid() == 0 {
        std::os::unix::fs::chown(s.path("foreign"), Some(65534), None).unwrap();
        65534
    } else {
        euid()
    };

    let table = [
        (
            writable,
            format!(
                "{:?} must not be group or world writable (mode 0775) in PARANOID builds",
                base.join("group-writable")
            ),
        ),
        (
            world,
            format!(
                "{:?} must not be group or world writable (mode 0777) in PARANOID builds",
                base.join("world-writable")
            ),
        ),
        (
            sticky,
            format!(
                "{:?} must not be group or world writable (mode 1777) in PARANOID builds",
                base.join("sticky")
            ),
        ),
        (
            foreign,
            format!(
                "{:?} must be owned by root (it is owned by uid {uid}) in PARANOID builds",
                base.join("foreign")
            ),
        ),
    ];
    for (text, message) in &table {
        let err = check_prison_dir(text, true).expect_err(text);
        assert_eq!(&err.to_string(), message, "PrisonDir {text}");
        // Negative control: the same directory is fine without PARANOID.
        assert!(check_prison_dir(text, false).is_ok(), "PrisonDir {text}");
    }
    // A real root-owned 0755 directory passes PARANOID (as any user).
    assert_eq!(
        check_prison_dir("/usr", true).map_err(|e| e.to_string()),
        Ok(PathBuf::from("/usr"))
    );
}

#[test]
fn ancestor_facts() {
    const DIR: u32 = 0o040000;
    let facts = |uid, mode| DirFacts {
        is_dir: true,
        uid,
        mode: DIR | mode,
    };
    let (srv, dir) = (Path::new("/srv/prison"), Path::new("/srv/prison/www"));
    let above = "\"/srv/prison\", above \"/srv/prison/www\",";
    // (facts of /srv/prison, expected error text or None)
    let table: &[(DirFacts, Option<String>)] = &[
        (facts(0, 0o755), None),
        (facts(0, 0o711), None),
        (facts(0, 0o555), None),
        // A root-owned sticky directory such as /tmp: no one else can rename the prison away.
        (facts(0, 0o1777), None),
        (facts(0, 0o1775), None),
        (
            facts(0, 0o757),
            Some(format!("{above} must not be group or world writable (mode 0757) in PARANOID builds: whoever can write to it could replace the prison")),
        ),
        (
            facts(0, 0o775),
            Some(format!("{above} must not be group or world writable (mode 0775) in PARANOID builds: whoever can write to it could replace the prison")),
        ),
        (
            facts(0, 0o2777),
            Some(format!("{above} must not be group or world writable (mode 2777) in PARANOID builds: whoever can write to it could replace the prison")),
        ),
        // Sticky is no help when someone else owns the directory.
        (
            facts(1000, 0o1777),
            Some(format!("{above} must be owned by root (it is owned by uid 1000) in PARANOID builds: its owner could replace the prison")),
        ),
        (
            facts(33, 0o755),
            Some(format!("{above} must be owned by root (it is owned by uid 33) in PARANOID builds: its owner could replace the prison")),
        ),
    ];
    for (facts, want) in table {
        let got = check_ancestor_facts(srv, dir, *facts).map_err(|e| e.to_string());
        assert_eq!(got, want.clone().map_or(Ok(()), Err), "{facts:?}");
    }
}

/// The case on real directories: `/srv/prison` mode 0757 above a correct PrisonDir.
#[test]
fn prison_dir_paranoid_ancestors() {
    assert_eq!(
        euid(),
        0,
        "needs root to own the scratch tree as root: sudo make test"
    );
    let s = Scratch::new("ancestors");
    let base = fs::canonicalize(s.path("")).unwrap();
    s.mkdir("srv", 0o757);
    s.mkdir("srv/prison", 0o755);
    let prison = s.mkdir("srv/prison/www", 0o755);
    let refused = |ancestor: &str, what: &str| {
        let err = check_prison_dir(&prison, true).expect_err("a writable ancestor");
        assert!(matches!(
            err,
            DirError::AncestorWritable { .. } | DirError::AncestorNotRootOwned { .. }
        ));
        assert_eq!(
            err.to_string(),
            format!(
                "{:?}, above {:?}, {what}",
                base.join(ancestor),
                base.join("srv/prison/www")
            )
        );
        // Negative control: without PARANOID the same tree is accepted.
        assert!(check_prison_dir(&prison, false).is_ok());
    };
    refused(
        "srv",
        "must not be group or world writable (mode 0757) in PARANOID builds: whoever can write to it could replace the prison",
    );
    // Fixed: accepted. (The scratch tree's own ancestors are the temp dir's: root, 0755 or
    // sticky.)
    s.chmod("srv", 0o755);
    assert_eq!(
        check_prison_dir(&prison, true).map_err(|e| e.to_string()),
        Ok(base.join("srv/prison/www"))
    );
    // The nearest ancestor counts as much as the farthest; ownership too.
    s.chmod("srv/prison", 0o775);
    refused(
        "srv/prison",
        "must not be group or world writable (mode 0775) in PARANOID builds: whoever can write to it could replace the prison",
    );
    s.chmod("srv/prison", 0o755);
    std::os::unix::fs::chown(s.path("srv"), Some(65534), None).unwrap();
    refused(
        "srv",
        "must be owned by root (it is owned by uid 65534) in PARANOID builds: its owner could replace the prison",
    );
    std::os::unix::fs::chown(s.path("srv"), Some(0), None).unwrap();
    // Reached through a symlink, the ancestors checked are the real ones.
    symlink(s.path("srv/prison/www"), s.path("link")).unwrap();
    s.chmod("srv", 0o757);
    assert!(matches!(
        check_prison_dir(&s.text("link"), true),
        Err(DirError::AncestorWritable { ancestor, .. }) if ancestor == base.join("srv")
    ));
}

// ---------------------------------------------------------------------------------------------
// Directives: the setters as httpd calls them, then finish()

fn host(server_name: &str) -> HostConfig {
    HostConfig {
        server_name: server_name.to_owned(),
        ..HostConfig::default()
    }
}

fn online() -> CpuSet {
    cpus("0-1")
}

#[test]
fn directive_errors_name_the_directive() {
    let s = Scratch::new("directives");
    let file = s.path("file");
    fs::write(&file, "").unwrap();
    let file = file.to_str().unwrap().to_owned();
    // (what the admin wrote, as a setter call) -> text after "Syntax error on line N of F:"
    type Setter = Box<dyn Fn(&mut Directives) -> Result<(), ConfigError>>;
    let table: Vec<(&str, Setter, String)> = vec![
        (
            "PrisonDir relative",
            Box::new(|d| d.prison_dir("relative")),
            "PrisonDir: \"relative\" is not an absolute path".into(),
        ),
        (
            "PrisonDir <file>",
            Box::new(move |d| d.prison_dir(&file)),
            format!(
                "PrisonDir: {:?} is not a directory",
                fs::canonicalize(s.path("file")).unwrap()
            ),
        ),
        (
            "PrisonIP 224.0.0.1",
            Box::new(|d| d.prison_ip(&["224.0.0.1"])),
            "PrisonIP: 224.0.0.1 is a multicast or broadcast address, which no socket can use as its source".into(),
        ),
        (
            "PrisonSecurity Some",
            Box::new(|d| d.prison_security("Some")),
            "PrisonSecurity: \"Some\" is not a level; PrisonSecurity takes None, ALL or IPC".into(),
        ),
        (
            "PrisonCPU 2",
            Box::new(|d| d.prison_cpu("2", &online())),
            "PrisonCPU: CPU 2 does not exist on this machine (it has CPUs 0,1)".into(),
        ),
        (
            "PrisonCPU 1-0",
            Box::new(|d| d.prison_cpu("1-0", &online())),
            "PrisonCPU: reversed range 1-0; write 0-1".into(),
        ),
        (
            "PrisonMemory 2G 1G",
            Box::new(|d| d.prison_memory("2G", "1G")),
            "PrisonMemory: report threshold 2147483648 is above the deny limit 1073741824; report must be at most deny (or deny 0 for no limit)".into(),
        ),
        (
            "PrisonName a.b",
            Box::new(|d| d.prison_name("a.b")),
            "PrisonName: \"a.b\" has characters other than letters, digits, '_' and '-'".into(),
        ),
    ];
    for (written, set, message) in table {
        let mut d = Directives::default();
        let err = set(&mut d).expect_err(written);
        assert_eq!(err.to_string(), message, "{written}");
        // A refused directive leaves nothing behind.
        assert!(
            matches!(d.finish(&host("x")), Ok(None)),
            "{written} must not be recorded"
        );
    }

    let wildcard = Directives::default().prison_ip(&["0.0.0.0"]);
    if PARANOID {
        assert_eq!(
            wildcard.map_err(|e| e.to_string()),
            Err("PrisonIP: 0.0.0.0 is a wildcard address; the prison needs one real address (refused in PARANOID builds)".into())
        );
    } else {
        assert!(wildcard.is_ok());
    }
}

#[test]
fn directives_given_twice_are_refused() {
    type Setter = fn(&mut Directives) -> Result<(), ConfigError>;
    let table: [(&str, Setter); 7] = [
        ("PrisonDir", |d| d.prison_dir("/usr")),
        ("PrisonProcesses", |d| d.prison_processes("64")),
        ("PrisonIP", |d| d.prison_ip(&["192.0.2.1"])),
        ("PrisonSecurity", |d| d.prison_security("IPC")),
        ("PrisonCPU", |d| d.prison_cpu("0", &cpus("0-1"))),
        ("PrisonMemory", |d| d.prison_memory("0", "1G")),
        ("PrisonName", |d| d.prison_name("www")),
    ];
    for (directive, set) in table {
        let mut d = Directives::default();
        set(&mut d).unwrap_or_else(|e| panic!("first {directive}: {e}"));
        let err = set(&mut d).expect_err(directive);
        assert!(matches!(err, ConfigError::Duplicate(name) if name == directive));
        assert_eq!(
            err.to_string(),
            format!("{directive}: given twice; each Prison directive may appear once")
        );
    }
    // PrisonIP twice is refused even when the two lines would fit in one.
    let mut d = Directives::default();
    d.prison_ip(&["192.0.2.1"]).unwrap();
    assert!(matches!(
        d.prison_ip(&["2001:db8::1"]),
        Err(ConfigError::Duplicate("PrisonIP"))
    ));
}

#[test]
fn finish_without_prison_dir() {
    // Nothing set: the module is loaded and jails nothing, whatever the rest says.
    let none = Directives::default();
    assert_eq!(none.finish(&host("plop.rmdir.fr")).unwrap(), None);
    let chroot = HostConfig {
        chroot_dir: Some("/srv/chroot".into()),
        ..host("")
    };
    assert_eq!(none.finish(&chroot).unwrap(), None);

    // Any other Prison directive alone names itself.
    type Setter = fn(&mut Directives) -> Result<(), ConfigError>;
    let table: [(&str, Setter); 6] = [
        ("PrisonIP", |d| d.prison_ip(&["192.0.2.1"])),
        ("PrisonProcesses", |d| d.prison_processes("0")),
        ("PrisonSecurity", |d| d.prison_security("None")),
        ("PrisonCPU", |d| d.prison_cpu("1", &cpus("0-1"))),
        ("PrisonMemory", |d| d.prison_memory("0", "0")),
        ("PrisonName", |d| d.prison_name("www")),
    ];
    for (directive, set) in table {
        let mut d = Directives::default();
        set(&mut d).unwrap();
        let err = d.finish(&host("plop.rmdir.fr")).expect_err(directive);
        assert!(matches!(err, ConfigError::NoPrisonDir(name) if name == directive));
        assert_eq!(
            err.to_string(),
            format!(
                "{directive} is set but PrisonDir is not; a prison is declared by its PrisonDir"
            )
        );
    }

    // Several: the first in the documented order is named.
    let mut d = Directives::default();
    d.prison_name("www").unwrap();
    d.prison_cpu("0", &online()).unwrap();
    assert!(matches!(
        d.finish(&host("x")),
        Err(ConfigError::NoPrisonDir("PrisonCPU"))
    ));
}

#[test]
fn finish_applies_defaults() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    let prison = d.finish(&host("plop.rmdir.fr")).unwrap().unwrap();
    assert_eq!(prison.name.as_str(), "plop_rmdir_fr");
    assert_eq!(prison.dir, PathBuf::from("/usr"));
    assert_eq!(prison.ip, PrisonIp::default());
    assert_eq!(prison.security, Security::DEFAULT);
    assert_eq!(prison.cpus, None);
    assert_eq!(prison.memory, MemoryLimits::default());
    let security = if PARANOID { "ALL" } else { "None" };
    assert_eq!(
        prison.to_string(),
        format!("prison plop_rmdir_fr at /usr, security {security}, no network")
    );
}

#[test]
fn finish_keeps_every_directive() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    d.prison_ip(&["2001:db8::1", "192.0.2.1"]).unwrap();
    d.prison_security("ipc").unwrap();
    d.prison_cpu("1,0", &online()).unwrap();
    d.prison_memory("1M", "0").unwrap();
    d.prison_name("www").unwrap();
    // An explicit PrisonName wins, even over a ServerName that would give no default.
    let prison = d.finish(&host("12345")).unwrap().unwrap();
    assert_eq!(prison.name.as_str(), "www");
    assert_eq!(prison.dir, PathBuf::from("/usr"));
    assert_eq!(prison.ip.v4, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(prison.ip.v6, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(prison.security, Security::Ipc);
    assert_eq!(prison.cpus, Some(cpus("0-1")));
    assert_eq!(
        prison.memory,
        MemoryLimits {
            report: Some(MIB),
            deny: None
        }
    );
    assert_eq!(
        prison.to_string(),
        "prison www at /usr, security IPC, ip 192.0.2.1, ip 2001:db8::1, cpus 0,1, memory report 1048576 deny none"
    );
}

#[test]
fn finish_refuses_chroot_dir() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    let chroot = HostConfig {
        chroot_dir: Some("/srv/chroot".into()),
        ..host("plop.rmdir.fr")
    };
    let err = d.finish(&chroot).expect_err("ChrootDir with PrisonDir");
    assert!(matches!(err, ConfigError::ChrootDir(ref dir) if dir == "/srv/chroot"));
    assert_eq!(
        err.to_string(),
        "PrisonDir cannot be combined with ChrootDir \"/srv/chroot\": the prison already is the child's root; remove ChrootDir"
    );
}

#[test]
fn finish_refuses_privileged_children_unless_security_is_none() {
    let suexec = HostConfig {
        privileged_children: vec!["mod_suexec (loaded)".into()],
        ..host("plop.rmdir.fr")
    };
    for level in ["ALL", "IPC"] {
        let mut d = Directives::default();
        d.prison_dir("/usr").unwrap();
        d.prison_security(level).unwrap();
        let err = d.finish(&suexec).expect_err("suEXEC with PrisonSecurity");
        assert!(
            matches!(err, ConfigError::PrivilegedChildren { .. }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "PrisonSecurity {level} cannot work with mod_suexec (loaded): "
            )),
            "{err}"
        );
    }
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    d.prison_security("None").unwrap();
    assert!(d.finish(&suexec).unwrap().is_some());
}

#[test]
fn finish_refuses_sysv_mutexes() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    let with = |mutexes: &[&str]| HostConfig {
        mutexes: mutexes.iter().map(|m| (*m).to_owned()).collect(),
        ..host("plop.rmdir.fr")
    };
    let err = d
        .finish(&with(&["file:/run default", "sysvsem ssl-cache"]))
        .expect_err("Mutex sysvsem");
    assert_eq!(
        err.to_string(),
        "Mutex \"sysvsem ssl-cache\": SysV semaphores do not work across the prison's IPC namespace; use Mutex pthread, fcntl or flock with PrisonDir"
    );
    assert!(d.finish(&with(&["SysVSem"])).is_err(), "case-insensitive");
    assert!(d.finish(&with(&["pthread default", "fcntl:/run"])).is_ok());
}

#[test]
fn finish_needs_a_usable_default_name() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    let table = [
        (
            "",
            "PrisonName: not set, and the ServerName \"\" does not give a usable default (empty name); set PrisonName",
        ),
        (
            "12345",
            "PrisonName: not set, and the ServerName \"12345\" does not give a usable default (\"12345\" is all digits, which FreeBSD would read as a jail id); set PrisonName",
        ),
        (
            "-www.example",
            "PrisonName: not set, and the ServerName \"-www.example\" does not give a usable default (\"-www_example\" starts with '-', which tools would read as an option); set PrisonName",
        ),
    ];
    for (server_name, message) in table {
        let err = d.finish(&host(server_name)).expect_err(server_name);
        assert!(matches!(err, ConfigError::NoDefaultName { .. }), "{err:?}");
        assert_eq!(err.to_string(), message, "ServerName {server_name:?}");
    }
}

/// A PrisonBind host path that is missing is refused, except when the configuration is read
/// for a graceful restart: then the build finds it missing and the previous prison serves on.
#[test]
fn a_missing_bind_source_is_refused_except_at_a_restart() {
    let missing = "/nonexistent/mod_prison-bind-source";
    let mut d = Directives::default();
    let err = d.prison_bind(&[missing, "/x"]).expect_err("missing source");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let mut d = Directives {
        restart: true,
        ..Directives::default()
    };
    d.prison_bind(&[missing, "/x"]).expect("left to the build");
    assert_eq!(d.binds[0].host, Path::new(missing));
}

fn connect_list(prison: &mod_prison::config::Prison) -> Vec<String> {
    prison
        .connect
        .as_ref()
        .expect("PrisonConnect set")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn prison_connect_lines_add_up_and_unset_is_any_destination() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    d.prison_ip(&["192.0.2.1", "2001:db8::1"]).unwrap();
    assert_eq!(
        d.clone().finish(&host("www")).unwrap().unwrap().connect,
        None
    );
    d.prison_connect(&["192.0.2.10:3306", "198.51.100.0/24:25"])
        .unwrap();
    d.prison_connect(&["[2001:db8::/64]:443"]).unwrap();
    let prison = d.finish(&host("www")).unwrap().unwrap();
    assert_eq!(
        connect_list(&prison),
        [
            "192.0.2.10:3306",
            "198.51.100.0/24:25",
            "[2001:db8::/64]:443"
        ]
    );
    assert!(prison
        .to_string()
        .ends_with(", 3 PrisonConnect destinations"));

    let mut none = Directives::default();
    none.prison_dir("/usr").unwrap();
    none.prison_ip(&["192.0.2.1"]).unwrap();
    none.prison_connect(&["none"]).unwrap();
    let prison = none.finish(&host("www")).unwrap().unwrap();
    assert_eq!(prison.connect, Some(vec![]));
    assert!(matches!(
        none.prison_connect(&["192.0.2.10"]),
        Err(ConfigError::Connect(_))
    ));
}

#[test]
fn prison_connect_needs_prison_ip_of_the_family() {
    let mut d = Directives::default();
    d.prison_dir("/usr").unwrap();
    d.prison_connect(&["192.0.2.10:3306"]).unwrap();
    let err = d.clone().finish(&host("www")).unwrap_err();
    assert!(matches!(err, ConfigError::ConnectWithoutIp), "{err}");
    assert!(err.to_string().contains("set PrisonIP"), "{err}");

    d.prison_ip(&["2001:db8::1"]).unwrap();
    let err = d.finish(&host("www")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PrisonConnect 192.0.2.10:3306: an IPv4 destination, but PrisonIP has no IPv4 address (the prison has no IPv4 sockets); add one to PrisonIP or remove the destination"
    );

    // Without PrisonDir, the usual error names PrisonConnect.
    let mut alone = Directives::default();
    alone.prison_connect(&["dns"]).unwrap();
    assert!(matches!(
        alone.finish(&host("www")),
        Err(ConfigError::NoPrisonDir("PrisonConnect"))
    ));
}

#[test]
fn prison_connect_dns_is_the_prisons_nameservers() {
    let scratch = Scratch::new("dns");
    let dir = scratch.mkdir("root", 0o755);
    scratch.mkdir("root/etc", 0o755);
    let prison_dir = |d: &mut Directives| {
        if PARANOID {
            // A scratch directory is not root-owned when the tests run as a user.
            d.dir = Some(PathBuf::from(&dir));
        } else {
            d.prison_dir(&dir).unwrap();
        }
    };
    let mut d = Directives::default();
    prison_dir(&mut d);
    d.prison_ip(&["192.0.2.1"]).unwrap();
    d.prison_connect(&["dns", "192.0.2.10:3306"]).unwrap();
    let err = d.clone().finish(&host("www")).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("PrisonConnect dns: {dir}/etc/resolv.conf: ")),
        "{err}"
    );
    fs::write(
        scratch.path("root/etc/resolv.conf"),
        "nameserver 127.0.0.53\nnameserver 2001:db8::53\noptions edns0\n",
    )
    .unwrap();
    let prison = d.clone().finish(&host("www")).unwrap().unwrap();
    // The IPv6 server is left out: the prison has no IPv6 sockets.
    assert_eq!(connect_list(&prison), ["127.0.0.53:53", "192.0.2.10:3306"]);

    // A PrisonBind onto /etc/resolv.conf is what the prison reads.
    fs::write(scratch.path("host-resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    d.prison_bind(&[&scratch.text("host-resolv.conf"), "/etc/resolv.conf"])
        .unwrap();
    let prison = d.finish(&host("www")).unwrap().unwrap();
    assert_eq!(connect_list(&prison), ["192.0.2.53:53", "192.0.2.10:3306"]);

    let mut v6 = Directives::default();
    prison_dir(&mut v6);
    v6.prison_ip(&["192.0.2.1"]).unwrap();
    v6.prison_connect(&["dns"]).unwrap();
    fs::write(
        scratch.path("root/etc/resolv.conf"),
        "nameserver 2001:db8::53\n",
    )
    .unwrap();
    let err = v6.finish(&host("www")).unwrap_err().to_string();
    assert!(
        err.ends_with("no nameserver line of a family PrisonIP has"),
        "{err}"
    );
}
