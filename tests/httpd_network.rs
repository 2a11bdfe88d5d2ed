//! PrisonIP on a real httpd, inside network namespaces the test creates (tests/common/netns.rs:
//! documentation-range addresses on a dummy and a veth, so no packet leaves them). httpd, the
//! probe and the test servers all run there.
//!
//! - Without PrisonIP the prison has a network namespace of its own with only `lo`: nothing
//!   outside is reachable, while Listen keeps serving.
//! - With PrisonIP the children stay in the site's namespace, and the prison's cgroup2 cgroup
//!   confines their sockets to the prison's addresses.
//!
//! Each check has its negative control: the same probe unjailed, in the same namespace.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::netns::{
    TestNet, OTHER_V4, OTHER_V6, PRISON_V4, PRISON_V6, REMOTE_V4, REMOTE_V6, SITE_LINK_V4,
    SITE_LINK_V6, SITE_V4,
};
use common::{key, ok_at, Httpd, Mpm, Setup, Value};
use mod_prison::jail::program_loaded;

/// The cgroup2 mount: /sys/fs/cgroup on a pure v2 host (`make test-cgroup2`), its `unified`
/// subdirectory on a hybrid one (the project's machines).
fn cgroup2() -> PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        root.to_path_buf()
    } else {
        root.join("unified")
    }
}

/// A TCP and a UDP server on one address, for the probe to reach.
struct Server {
    tcp: TcpListener,
    udp: UdpSocket,
}

impl Server {
    fn bind(ip: &str) -> Self {
        let addr = SocketAddr::new(ip.parse().expect("address"), 0);
        let tcp = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind tcp {addr}: {e}"));
        let udp = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind udp {addr}: {e}"));
        tcp.set_nonblocking(true).expect("nonblocking");
        udp.set_nonblocking(true).expect("nonblocking");
        Self { tcp, udp }
    }

    fn tcp_addr(&self) -> String {
        self.tcp.local_addr().expect("addr").to_string()
    }

    fn udp_addr(&self) -> String {
        self.udp.local_addr().expect("addr").to_string()
    }

    /// The source addresses of every connection and datagram received so far.
    fn sources(&self) -> (Vec<String>, Vec<String>) {
        let deadline = Instant::now() + Duration::from_millis(300);
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        while Instant::now() < deadline {
            match self.tcp.accept() {
                Ok((_, peer)) => tcp.push(peer.ip().to_string()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            let mut buf = [0u8; 64];
            match self.udp.recv_from(&mut buf) {
                Ok((_, peer)) => udp.push(peer.ip().to_string()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv_from: {e}"),
            }
            sleep(Duration::from_millis(10));
        }
        (tcp, udp)
    }
}

/// The servers of one test: on the site's other address (same route as the prison's), on the
/// remote host, and on the site's loopback.
struct Servers {
    other4: Server,
    other6: Server,
    remote4: Server,
    remote6: Server,
    loopback: Server,
}

impl Servers {
    fn start(net: &TestNet) -> Self {
        let (remote4, remote6) =
            net.run_in_remote(|| (Server::bind(REMOTE_V4), Server::bind(REMOTE_V6)));
        Self {
            other4: Server::bind(OTHER_V4),
            other6: Server::bind(OTHER_V6),
            remote4,
            remote6,
            loopback: Server::bind("127.0.0.1"),
        }
    }

    fn all(&self) -> [(&'static str, &Server); 5] {
        [
            ("other4", &self.other4),
            ("other6", &self.other6),
            ("remote4", &self.remote4),
            ("remote6", &self.remote6),
            ("loopback", &self.loopback),
        ]
    }

    /// `connect=...&udp=...` for every server.
    fn query(&self) -> String {
        self.all()
            .iter()
            .map(|(_, s)| format!("connect={}&udp={}", s.tcp_addr(), s.udp_addr()))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn field_at<'a>(v: &'a Value, section: &str, item: &str, field: &str) -> &'a str {
    common::str_at(v, &format!("/{section}/{}/{field}", key(item)))
}

fn errno_at(v: &Value, section: &str, item: &str) -> i64 {
    v.pointer(&format!("/{section}/{}/errno", key(item)))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn ip_of(socket_addr: &str) -> String {
    socket_addr
        .parse::<SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// The v2 cgroup of a process (the `0::` line).
fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("")
        .to_owned()
}

/// Every directory of the cgroup2 hierarchy whose name mentions `needle`.
fn cgroups_named(needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name().to_string_lossy().contains(needle) {
                    found.push(path.clone());
                }
                walk(&path, needle, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(&cgroup2(), needle, &mut found);
    found
}

/// sock_create, bind4/6, connect4/6, udp sendmsg4/6.
const ATTACH_TYPES: [u32; 7] = [2, 8, 9, 10, 11, 14, 15];

/// The ids of the programs attached to the cgroup `dir`, per attach type.
fn attached_programs(dir: &Path) -> Vec<(u32, Vec<u32>)> {
    let cgroup = std::fs::File::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    ATTACH_TYPES
        .iter()
        .map(|&attach_type| {
            let ids = mod_prison::jail::attached(&cgroup, attach_type)
                .unwrap_or_else(|e| panic!("BPF_PROG_QUERY {}: {e}", dir.display()));
            (attach_type, ids)
        })
        .collect()
}

/// The programs attached to the cgroups named for `prison` in the cgroup2 hierarchy.
fn programs_of(prison: &str) -> BTreeSet<u32> {
    cgroups_named(&format!("prison-{prison}."))
        .iter()
        .flat_map(|dir| attached_programs(dir))
        .flat_map(|(_, ids)| ids)
        .collect()
}

/// Waits up to five seconds for the kernel to free `programs` (it does once their cgroup is
/// released, which lags the rmdir), and returns those still loaded.
fn still_loaded(programs: &BTreeSet<u32>) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let loaded: Vec<u32> = programs
            .iter()
            .copied()
            .filter(|&id| program_loaded(id))
            .collect();
        if loaded.is_empty() || started.elapsed() > Duration::from_secs(5) {
            return loaded;
        }
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_prison_ip_the_prison_reaches_nothing_but_serves() {
    let net = TestNet::new();
    let _site = net.enter_site();
    let servers = Servers::start(&net);
    let query = servers.query();

    let mut jailed = Httpd::new(Setup::new(Mpm::Event));
    jailed.start();
    let seen = jailed.probe(&query);
    for (name, server) in servers.all() {
        let (tcp, udp) = (server.tcp_addr(), server.udp_addr());
        assert!(
            !ok_at(&seen, "connect", &tcp),
            "{name}: connected out: {seen:#}"
        );
        // The prison's own loopback takes a datagram to 127.0.0.1 (and drops it).
        if name != "loopback" {
            assert!(!ok_at(&seen, "udp", &udp), "{name}: sent out: {seen:#}");
        }
        assert_eq!(
            server.sources(),
            (vec![], vec![]),
            "{name} heard the prison"
        );
    }
    assert_eq!(jailed.get("/").status, 200, "Listen still serves");
    jailed.stop_cleanly();

    // Negative control: the same probe, unjailed, in the same namespace, reaches every server.
    let mut open = Httpd::new(Setup::new(Mpm::Event).unjailed());
    open.start();
    let seen = open.probe(&query);
    for (name, server) in servers.all() {
        let (tcp, udp) = (server.tcp_addr(), server.udp_addr());
        assert!(ok_at(&seen, "connect", &tcp), "{name}: control: {seen:#}");
        assert!(ok_at(&seen, "udp", &udp), "{name}: control: {seen:#}");
        let (tcp, udp) = server.sources();
        assert_eq!((tcp.len(), udp.len()), (1, 1), "{name}: control");
    }
    open.stop_cleanly();
}

/// What the prison's and the control's probe ask in the PrisonIP test.
fn prison_ip_query(servers: &Servers) -> String {
    let other = servers.other4.tcp_addr();
    format!(
        "{}&bind={OTHER_V4}:0&bind=0.0.0.0:0&bind=0.0.0.0:0/{other}&bind=[{OTHER_V6}]:0\
         &bind=[::]:0&bind=[::]:0/{other6}&bind=127.0.0.1:0\
         &socket=tcp4&socket=udp4&socket=tcp6&socket=udp6&socket=raw4&socket=raw6\
         &socket=ping4&socket=ping6&connect=[::ffff:{OTHER_V4}]:{port}",
        servers.query(),
        other6 = servers.other6.tcp_addr(),
        port = servers.other4.tcp.local_addr().expect("addr").port(),
    )
}

#[test]
fn with_prison_ip_every_socket_carries_the_prison_address() {
    let net = TestNet::new();
    let (site, remote) = (net.site.clone(), net.remote.clone());
    let _site = net.enter_site();
    let servers = Servers::start(&net);
    let query = prison_ip_query(&servers);
    let other4 = servers.other4.tcp_addr();
    let other6 = servers.other6.tcp_addr();
    let eperm = i64::from(libc::EPERM);

    let mut httpd =
        Httpd::new(Setup::new(Mpm::Event).line(format!("PrisonIP {PRISON_V4} {PRISON_V6}")));
    httpd.start();
    let master = httpd.master();
    let mut programs = BTreeSet::new();
    for round in 0..2 {
        if round == 1 {
            // A new generation gets a new cgroup; the old one goes once its children have.
            httpd.graceful();
        }
        let mut cgroups = BTreeSet::new();
        for pid in httpd.children() {
            assert_eq!(
                common::namespace(pid, "net"),
                common::namespace(master, "net"),
                "child {pid}: with PrisonIP the children stay in the host's network namespace"
            );
            let cgroup = cgroup_of(pid);
            assert!(
                cgroup.contains(&format!("prison-{}.", httpd.name)),
                "child {pid} is in cgroup {cgroup:?}"
            );
            cgroups.insert(cgroup);
        }
        assert_eq!(cgroups.len(), 1, "one cgroup per generation: {cgroups:?}");
        let cgroup = cgroups.pop_first().unwrap_or_default();
        let dir = cgroup2().join(cgroup.trim_start_matches('/'));
        for (attach_type, ids) in attached_programs(&dir) {
            assert_eq!(
                ids.len(),
                1,
                "attach type {attach_type} on {}",
                dir.display()
            );
            programs.extend(ids);
        }

        let seen = httpd.probe(&query);
        let what = format!("round {round}: {seen:#}");
        // Sources: the prison's address, although the site has others on those routes. The
        // servers on the site's other addresses also get the bind-then-connect connections.
        for (name, server, prison, connections) in [
            ("other4", &servers.other4, PRISON_V4, 2),
            ("other6", &servers.other6, PRISON_V6, 2),
            ("remote4", &servers.remote4, PRISON_V4, 1),
            ("remote6", &servers.remote6, PRISON_V6, 1),
        ] {
            let (tcp, udp) = (server.tcp_addr(), server.udp_addr());
            assert!(ok_at(&seen, "connect", &tcp), "{name}: {what}");
            assert!(ok_at(&seen, "udp", &udp), "{name}: {what}");
            assert_eq!(
                ip_of(field_at(&seen, "connect", &tcp, "local")),
                prison,
                "{name}"
            );
            let (tcp_sources, udp_sources) = server.sources();
            assert_eq!(
                tcp_sources,
                vec![prison.to_owned(); connections],
                "{name}: TCP"
            );
            assert_eq!(udp_sources, vec![prison.to_owned()], "{name}: UDP source");
        }
        // The site's loopback is not the prison's: 127.0.0.1 leads to the prison's address,
        // where nothing listens on that port.
        let loopback = servers.loopback.tcp_addr();
        assert!(!ok_at(&seen, "connect", &loopback), "loopback: {what}");
        assert_eq!(
            servers.loopback.sources(),
            (vec![], vec![]),
            "loopback heard the prison"
        );
        // bind: the prison's address only; the wildcard becomes it, and stays it on connect.
        for refused in [
            format!("{OTHER_V4}:0"),
            format!("[{OTHER_V6}]:0"),
            "127.0.0.1:0".into(),
        ] {
            assert_eq!(
                errno_at(&seen, "bind", &refused),
                eperm,
                "bind {refused}: {what}"
            );
        }
        assert_eq!(
            ip_of(field_at(&seen, "bind", "0.0.0.0:0", "local")),
            PRISON_V4
        );
        assert_eq!(ip_of(field_at(&seen, "bind", "[::]:0", "local")), PRISON_V6);
        let then = format!("0.0.0.0:0/{other4}");
        assert_eq!(
            ip_of(field_at(&seen, "bind", &then, "connected_local")),
            PRISON_V4,
            "{what}"
        );
        let then6 = format!("[::]:0/{other6}");
        assert_eq!(
            ip_of(field_at(&seen, "bind", &then6, "connected_local")),
            PRISON_V6,
            "{what}"
        );
        // Socket kinds: TCP and UDP only.
        for kind in ["tcp4", "udp4", "tcp6", "udp6"] {
            assert!(ok_at(&seen, "socket", kind), "{kind}: {what}");
        }
        for kind in ["raw4", "raw6", "ping4", "ping6"] {
            assert_eq!(errno_at(&seen, "socket", kind), eperm, "{kind}: {what}");
        }
        // IPv4-mapped IPv6 would go around the IPv4 rules.
        let mapped = format!(
            "[::ffff:{OTHER_V4}]:{}",
            servers.other4.tcp.local_addr().unwrap().port()
        );
        assert_eq!(errno_at(&seen, "connect", &mapped), eperm, "{what}");
        assert_eq!(httpd.get("/").status, 200, "Listen still serves");
    }
    // (A generation's cgroup may take the name of one that is already gone.)
    assert_eq!(programs.len(), 14, "seven new programs per generation");
    assert!(
        !httpd.error_log().contains("[prison:emerg]"),
        "{}",
        httpd.error_log()
    );

    // httpd removes its cgroups before it exits; the kernel frees the programs after that.
    httpd.stop_cleanly();
    assert_eq!(
        cgroups_named(&httpd.name),
        Vec::<PathBuf>::new(),
        "cgroups left"
    );
    assert_eq!(
        still_loaded(&programs),
        Vec::<u32>::new(),
        "BPF programs still loaded"
    );
    drop(_site);
    drop(servers);
    drop(net);
    assert!(!TestNet::exists(&site, &remote), "network namespaces left");
}

/// Negative control for the PrisonIP test: the same probe unjailed, in the same namespace,
/// gets the kernel's own choices, so every assertion there could fail.
#[test]
fn without_the_prison_the_same_probe_uses_any_address() {
    let net = TestNet::new();
    let _site = net.enter_site();
    let servers = Servers::start(&net);
    let query = prison_ip_query(&servers);
    let mut httpd = Httpd::new(Setup::new(Mpm::Event).unjailed());
    httpd.start();
    let seen = httpd.probe(&query);
    let what = format!("{seen:#}");
    // (server, source, TCP connections: the other addresses also get bind-then-connect and,
    // for IPv4, the IPv4-mapped connect)
    for (name, server, source, connections) in [
        ("other4", &servers.other4, SITE_V4, 3),
        ("other6", &servers.other6, OTHER_V6, 2),
        ("remote4", &servers.remote4, SITE_LINK_V4, 1),
        ("remote6", &servers.remote6, SITE_LINK_V6, 1),
        ("loopback", &servers.loopback, "127.0.0.1", 1),
    ] {
        assert!(
            ok_at(&seen, "connect", &server.tcp_addr()),
            "{name}: {what}"
        );
        let (tcp, udp) = server.sources();
        assert_eq!(tcp, vec![source.to_owned(); connections], "{name}: TCP");
        assert_eq!(udp, vec![source.to_owned()], "{name}: UDP");
    }
    for bound in [
        format!("{OTHER_V4}:0"),
        format!("[{OTHER_V6}]:0"),
        "127.0.0.1:0".into(),
    ] {
        assert!(ok_at(&seen, "bind", &bound), "bind {bound}: {what}");
    }
    assert_eq!(
        field_at(&seen, "bind", "0.0.0.0:0", "local")
            .split(':')
            .next(),
        Some("0.0.0.0")
    );
    // As www-data, raw sockets fail anyway (no CAP_NET_RAW); ping sockets are open in the site.
    for kind in ["tcp4", "udp4", "tcp6", "udp6", "ping4", "ping6"] {
        assert!(ok_at(&seen, "socket", kind), "{kind}: {what}");
    }
    httpd.stop_cleanly();
}

#[test]
fn an_ipv4_only_prison_has_no_ipv6() {
    let net = TestNet::new();
    let _site = net.enter_site();
    let servers = Servers::start(&net);
    let mut httpd = Httpd::new(Setup::new(Mpm::Prefork).line(format!("PrisonIP {PRISON_V4}")));
    httpd.start();
    let (other4, other6) = (servers.other4.tcp_addr(), servers.other6.tcp_addr());
    let seen = httpd.probe(&format!(
        "connect={other4}&connect={other6}&socket=tcp4&socket=tcp6&socket=udp6&bind=[::]:0"
    ));
    let what = format!("{seen:#}");
    let eperm = i64::from(libc::EPERM);
    assert!(ok_at(&seen, "connect", &other4), "{what}");
    assert_eq!(servers.other4.sources().0, vec![PRISON_V4.to_owned()]);
    assert!(ok_at(&seen, "socket", "tcp4"), "{what}");
    for kind in ["tcp6", "udp6"] {
        assert_eq!(errno_at(&seen, "socket", kind), eperm, "{kind}: {what}");
    }
    assert_eq!(errno_at(&seen, "connect", &other6), eperm, "{what}");
    assert_eq!(errno_at(&seen, "bind", "[::]:0"), eperm, "{what}");
    assert!(servers.other6.sources().0.is_empty());
    httpd.stop_cleanly();
    assert_eq!(
        cgroups_named(&httpd.name),
        Vec::<PathBuf>::new(),
        "cgroups left"
    );
}

/// A crash, for real: `kill -9` of httpd and of every child, with every resource limit and
/// PrisonIP on, leaves the prison's cgroups behind with PrisonIP's programs attached. The next
/// start under the same PrisonName removes them (which frees the programs) and serves jailed;
/// its stop leaves nothing of either run.
#[test]
fn a_crashed_runs_cgroups_and_programs_are_removed_by_the_next_start() {
    let net = TestNet::new();
    let _site = net.enter_site();
    let mut httpd = Httpd::new(
        Setup::new(Mpm::Event)
            .line(format!("PrisonIP {PRISON_V4}"))
            .line("PrisonProcesses 100")
            .line("PrisonMemory 64M 256M")
            .line("PrisonCPU 0"),
    );
    httpd.start();
    let crashed = common::prison_cgroups(&httpd.name);
    let identities = |dirs: &BTreeSet<PathBuf>| -> BTreeSet<(u64, u64)> {
        dirs.iter().filter_map(|d| common::dev_ino(d)).collect()
    };
    let crashed_ids = identities(&crashed);
    let programs = programs_of(&httpd.name);
    assert!(!programs.is_empty(), "no program attached: {crashed:?}");

    httpd.crash();
    // What a crash leaves: every cgroup, and the programs in them.
    assert_eq!(common::prison_cgroups(&httpd.name), crashed);
    assert!(
        programs.iter().all(|&id| program_loaded(id)),
        "the crash freed a program by itself, so this test shows nothing"
    );

    httpd.start();
    let now = common::prison_cgroups(&httpd.name);
    let now_ids = identities(&now);
    assert!(
        crashed_ids.is_disjoint(&now_ids) && !now_ids.is_empty(),
        "a cgroup of the crashed run survived the start: before {crashed:?}, now {now:?}"
    );
    assert_eq!(
        still_loaded(&programs),
        Vec::<u32>::new(),
        "programs of the crashed run"
    );
    let serving = programs_of(&httpd.name);
    assert!(serving.is_disjoint(&programs) && !serving.is_empty());
    let jailed = httpd.jailed_processes();
    for pid in httpd.children() {
        assert!(jailed.contains(&pid), "child {pid} is not in PrisonDir");
        let cgroup = cgroup_of(pid);
        assert!(
            cgroup.contains(&format!("prison-{}.", httpd.name)),
            "child {pid} is in cgroup {cgroup:?}"
        );
    }
    assert_eq!(httpd.get("/").body, common::INDEX);

    httpd.stop_cleanly();
    assert_eq!(common::prison_cgroups(&httpd.name), BTreeSet::new());
    assert_eq!(still_loaded(&serving), Vec::<u32>::new(), "programs left");
}

/// What the PrisonConnect tests ask: every server by TCP and UDP (`Servers::query`), TCP fast
/// open and connected UDP to some, and an IPv4-mapped IPv6 connect.
fn prison_connect_query(servers: &Servers) -> String {
    format!(
        "{}&tfo={}&tfo={}&udpconnect={}&udpconnect={}&connect=[::ffff:{REMOTE_V4}]:{}",
        servers.query(),
        servers.remote4.tcp_addr(),
        servers.other4.tcp_addr(),
        servers.remote4.udp_addr(),
        servers.remote6.udp_addr(),
        servers.remote4.tcp.local_addr().expect("addr").port(),
    )
}

/// The refusal count the monitor last logged, if any.
fn logged_refusals(httpd: &Httpd) -> Option<u64> {
    httpd
        .error_log()
        .lines()
        .filter_map(|l| l.split_once("PrisonConnect refused ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(" ("))
        .filter_map(|(_, total)| total.split(' ').next()?.parse().ok())
        .next_back()
}

/// PrisonConnect on a real httpd: every listed destination is reached, by TCP connect, TCP
/// fast open, UDP sendto and connected UDP, IPv4 and IPv6; every other one fails with EPERM
/// and its server hears nothing. The host's loopback is reached only through its own entry.
/// The monitor logs the refusals with their count.
#[test]
fn prison_connect_reaches_listed_destinations_only() {
    let net = TestNet::new();
    let _site = net.enter_site();
    let servers = Servers::start(&net);
    let query = prison_connect_query(&servers);
    let loopback_tcp = servers.loopback.tcp_addr();
    let mut httpd = Httpd::new(
        Setup::new(Mpm::Event)
            .line(format!("PrisonIP {PRISON_V4} {PRISON_V6}"))
            .line(format!(
                "PrisonConnect {} {}",
                servers.remote4.tcp_addr(),
                servers.remote4.udp_addr()
            ))
            .line(format!(
                "PrisonConnect {} {} {loopback_tcp}",
                servers.remote6.tcp_addr(),
                servers.other6.udp_addr()
            )),
    );
    httpd.start();
    let seen = httpd.probe(&query);
    let what = format!("{seen:#}");
    let eperm = i64::from(libc::EPERM);
    let (v4, v6) = (PRISON_V4.to_owned(), PRISON_V6.to_owned());
    // (server, TCP connect and UDP send allowed, the sources it hears: TCP, UDP)
    for (name, server, tcp_ok, udp_ok, heard) in [
        (
            "remote4",
            &servers.remote4,
            true,
            true,
            (vec![v4.clone(); 2], vec![v4.clone(); 2]),
        ),
        (
            "remote6",
            &servers.remote6,
            true,
            false,
            (vec![v6.clone()], vec![]),
        ),
        ("other4", &servers.other4, false, false, (vec![], vec![])),
        (
            "other6",
            &servers.other6,
            false,
            true,
            (vec![], vec![v6.clone()]),
        ),
        // Its own entry: the host's loopback service, reached from the prison's address. The
        // UDP port is not listed: the destination becomes the prison's address, refused too.
        (
            "loopback",
            &servers.loopback,
            true,
            false,
            (vec![v4.clone()], vec![]),
        ),
    ] {
        let (tcp, udp) = (server.tcp_addr(), server.udp_addr());
        match tcp_ok {
            true => assert!(ok_at(&seen, "connect", &tcp), "{name}: {what}"),
            false => assert_eq!(errno_at(&seen, "connect", &tcp), eperm, "{name}: {what}"),
        }
        match udp_ok {
            true => assert!(ok_at(&seen, "udp", &udp), "{name}: {what}"),
            false => assert_eq!(errno_at(&seen, "udp", &udp), eperm, "{name}: {what}"),
        }
        assert_eq!(server.sources(), heard, "{name}: {what}");
    }
    let (remote4_tcp, other4_tcp) = (servers.remote4.tcp_addr(), servers.other4.tcp_addr());
    assert!(ok_at(&seen, "tfo", &remote4_tcp), "{what}");
    assert_eq!(errno_at(&seen, "tfo", &other4_tcp), eperm, "{what}");
    assert!(
        ok_at(&seen, "udpconnect", &servers.remote4.udp_addr()),
        "{what}"
    );
    let remote6_udp = servers.remote6.udp_addr();
    assert_eq!(errno_at(&seen, "udpconnect", &remote6_udp), eperm, "{what}");
    let mapped = format!(
        "[::ffff:{REMOTE_V4}]:{}",
        servers.remote4.tcp.local_addr().expect("addr").port()
    );
    assert_eq!(errno_at(&seen, "connect", &mapped), eperm, "{what}");
    assert_eq!(httpd.get("/").status, 200, "Listen still serves");

    // Refused: other4 (connect, udp, tfo), remote6 (udp, udpconnect), other6 (connect),
    // loopback (udp), the mapped connect. httpd's monitor runs about every ten seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged_refusals(&httpd) != Some(8) && Instant::now() < deadline {
        sleep(Duration::from_millis(500));
    }
    assert_eq!(logged_refusals(&httpd), Some(8), "{}", httpd.error_log());
    httpd.stop_cleanly();
}

/// Negative control for the PrisonConnect test: the same probe with PrisonIP alone reaches
/// every server (the loopback one excepted: 127.0.0.1 is the prison's address there) and
/// nothing is counted.
#[test]
fn without_prison_connect_the_same_probe_reaches_every_destination() {
    let net = TestNet::new();
    let _site = net.enter_site();
    let servers = Servers::start(&net);
    let query = prison_connect_query(&servers);
    let mut httpd =
        Httpd::new(Setup::new(Mpm::Event).line(format!("PrisonIP {PRISON_V4} {PRISON_V6}")));
    httpd.start();
    let seen = httpd.probe(&query);
    let what = format!("{seen:#}");
    let (v4, v6) = (PRISON_V4.to_owned(), PRISON_V6.to_owned());
    for (name, server, heard) in [
        (
            "remote4",
            &servers.remote4,
            (vec![v4.clone(); 2], vec![v4.clone(); 2]),
        ),
        (
            "remote6",
            &servers.remote6,
            (vec![v6.clone()], vec![v6.clone(); 2]),
        ),
        (
            "other4",
            &servers.other4,
            (vec![v4.clone(); 2], vec![v4.clone()]),
        ),
        (
            "other6",
            &servers.other6,
            (vec![v6.clone()], vec![v6.clone()]),
        ),
        ("loopback", &servers.loopback, (vec![], vec![])),
    ] {
        if name != "loopback" {
            assert!(
                ok_at(&seen, "connect", &server.tcp_addr()),
                "{name}: {what}"
            );
            assert!(ok_at(&seen, "udp", &server.udp_addr()), "{name}: {what}");
        }
        assert_eq!(server.sources(), heard, "{name}: {what}");
    }
    for tcp in [servers.remote4.tcp_addr(), servers.other4.tcp_addr()] {
        assert!(ok_at(&seen, "tfo", &tcp), "{tcp}: {what}");
    }
    let loopback = servers.loopback.tcp_addr();
    assert_eq!(
        errno_at(&seen, "connect", &loopback),
        i64::from(libc::ECONNREFUSED),
        "{what}"
    );
    // Without PrisonConnect the programs have no counter, and nothing is logged.
    sleep(Duration::from_secs(12));
    assert_eq!(logged_refusals(&httpd), None, "{}", httpd.error_log());
    httpd.stop_cleanly();
}
