//! The Linux prison on a real httpd: every child and the cgid daemon jailed (checked from
//! outside through /proc), what a CGI sees inside (with the unjailed negative control),
//! graceful restarts, clean stop, and the failure paths.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{ok_at, str_at, Httpd, Mpm, Setup, Value, USER_ID};

const NAMESPACES: [&str; 4] = ["mnt", "net", "ipc", "uts"];

/// Every child of the master, checked from outside. A child forked a moment ago is still
/// root in the host's namespaces until its drop_privileges hook runs: each child gets a
/// second to be jailed (or to be gone) before it counts as a failure.
fn assert_children_jailed(httpd: &Httpd) {
    let children = httpd.children();
    assert!(!children.is_empty(), "no children");
    for pid in children {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match child_jail_problem(httpd, pid) {
                None => break,
                Some(_) if !common::alive(pid) => break,
                Some(problem) if std::time::Instant::now() > deadline => {
                    panic!("child {pid} ({}): {problem}", common::cmdline(pid))
                }
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
}

/// What is wrong with one child's prison, seen from /proc; `None` when it is jailed.
fn child_jail_problem(httpd: &Httpd, pid: i32) -> Option<String> {
    let master = httpd.master();
    let root = common::dev_ino(&std::path::PathBuf::from(format!("/proc/{pid}/root/")));
    if root != common::dev_ino(&httpd.prison) {
        return Some("root is not PrisonDir".into());
    }
    for kind in NAMESPACES {
        if common::namespace(pid, kind) == common::namespace(master, kind) {
            return Some(format!("shares the parent's {kind} namespace"));
        }
    }
    let (uids, gids) = (common::ids(pid, "Uid"), common::ids(pid, "Gid"));
    if uids != [USER_ID; 4] || gids != [USER_ID; 4] {
        return Some(format!("uids {uids:?}, gids {gids:?}"));
    }
    None
}

fn probe_query(httpd: &Httpd, target: &str) -> String {
    format!(
        "read={secret}&read=/etc/hosts&connect={target}&resolve=localhost&ns=1",
        secret = httpd.secret.display()
    )
}

/// A TCP server on the host's loopback, outside the prison, for the probe to try to reach.
fn outside_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

#[test]
fn children_and_cgi_are_jailed_under_every_mpm() {
    let (_server, outside) = outside_server();
    for mpm in Mpm::ALL {
        let mut httpd = Httpd::new(Setup::new(mpm));
        httpd.start();
        let index = httpd.get("/");
        assert_eq!(
            (index.status, index.body.as_str()),
            (200, common::INDEX),
            "{mpm:?}"
        );
        assert_children_jailed(&httpd);
        if mpm != Mpm::Prefork {
            let cgid = httpd
                .children()
                .into_iter()
                .filter(|&pid| common::status_field(pid, "Threads").as_deref() == Some("1"))
                .count();
            assert!(
                cgid >= 1,
                "{mpm:?}: no single-threaded child (the cgid daemon)"
            );
        }

        let seen = httpd.probe(&probe_query(&httpd, &outside));
        let what = format!("{mpm:?} probe: {seen:#}");
        assert_eq!(seen["uid"], USER_ID, "{what}");
        assert_eq!(seen["euid"], USER_ID, "{what}");
        assert_eq!(seen["hostname"], httpd.name.as_str(), "{what}");
        let root: BTreeSet<&str> = seen["root_entries"]["entries"]
            .as_array()
            .expect("root entries")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            root.contains("www")
                && root.contains("cgi-bin")
                && ["bin", "home", "root", "proc", "work", "sbin"]
                    .iter()
                    .all(|host| !root.contains(host)),
            "{what}"
        );
        assert_eq!(seen["proc_exists"], false, "{what}");
        let secret = httpd.secret.display().to_string();
        assert!(
            !ok_at(&seen, "read", &secret),
            "{what}: read the host marker"
        );
        assert!(ok_at(&seen, "read", "/etc/hosts"), "{what}: no /etc/hosts");
        assert!(!ok_at(&seen, "connect", &outside), "{what}: connected out");
        assert!(ok_at(&seen, "resolve", "localhost"), "{what}: localhost");
        assert!(
            !httpd.error_log().contains("[prison:emerg]"),
            "{}",
            httpd.error_log()
        );
        httpd.stop_cleanly();
    }
}

#[test]
fn without_prison_dir_the_same_probe_sees_the_host() {
    let (_server, outside) = outside_server();
    for mpm in [Mpm::Prefork, Mpm::Event] {
        let mut httpd = Httpd::new(Setup::new(mpm).unjailed());
        httpd.start();
        let master = httpd.master();
        for pid in httpd.children() {
            assert_eq!(
                common::namespace(pid, "mnt"),
                common::namespace(master, "mnt"),
                "{mpm:?}: unjailed child {pid} has its own mount namespace"
            );
        }
        let seen = httpd.probe(&probe_query(&httpd, &outside));
        let what = format!("{mpm:?} unjailed probe: {seen:#}");
        let secret = httpd.secret.display().to_string();
        assert!(ok_at(&seen, "read", &secret), "{what}");
        assert!(ok_at(&seen, "connect", &outside), "{what}");
        assert_eq!(seen["proc_exists"], true, "{what}");
        assert_eq!(
            str_at(&seen, "/ns/links/mnt"),
            common::namespace(master, "mnt").unwrap(),
            "{what}"
        );
        httpd.stop_cleanly();
    }
}

#[test]
fn graceful_restarts_keep_serving_and_stop_leaves_nothing() {
    let before_mounts = common::host_mounts();
    for mpm in [Mpm::Event, Mpm::Prefork] {
        let mut httpd = Httpd::new(Setup::new(mpm));
        httpd.start();
        let mut prison_namespaces = BTreeSet::new();
        for round in 0..10 {
            httpd.graceful();
            assert_children_jailed(&httpd);
            for pid in httpd.children() {
                prison_namespaces
                    .extend(NAMESPACES.iter().filter_map(|k| common::namespace(pid, k)));
            }
            let seen = httpd.probe("");
            assert_eq!(seen["uid"], USER_ID, "{mpm:?} round {round}");
            let mnt: BTreeSet<_> = httpd
                .children()
                .into_iter()
                .filter_map(|pid| common::namespace(pid, "mnt"))
                .collect();
            assert_eq!(
                mnt.len(),
                1,
                "{mpm:?} round {round}: one prison per generation"
            );
        }
        // Each generation gets its prison built from its configuration. (Namespace ids cannot
        // tell generations apart: the kernel reuses the number of a namespace that died.)
        assert_eq!(
            httpd
                .error_log()
                .matches(": ready, children run as")
                .count(),
            11,
            "{mpm:?}: {}",
            httpd.error_log()
        );
        httpd.stop_cleanly();
        assert!(httpd.jailed_processes().is_empty());
        // A namespace that died gives its number to the next one made (the kernel allocates
        // the lowest free one), and the other tests here make prisons meanwhile: a number of
        // ours is a leftover only if a process of this instance (its ServerRoot in the command
        // line: httpd, a holder, a CGI) is in it.
        let root = httpd.root.to_string_lossy().into_owned();
        let held: Vec<_> = common::pids()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(&root))
            })
            .flat_map(|pid| {
                NAMESPACES
                    .iter()
                    .filter_map(move |k| common::namespace(pid, k).map(|ns| (pid, ns)))
            })
            .filter(|(_, ns)| prison_namespaces.contains(ns))
            .collect();
        assert!(
            held.is_empty(),
            "{mpm:?}: prison namespaces still held after stop (pid, namespace): {held:?}"
        );
    }
    let after_mounts = common::host_mounts();
    let new_mounts: Vec<_> = after_mounts.difference(&before_mounts).collect();
    assert!(new_mounts.is_empty(), "host mounts left: {new_mounts:?}");
}

#[test]
fn a_prison_dir_removed_after_the_config_check_stops_the_start() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event));
    let (ok, text) = httpd.config_test();
    assert!(ok, "{text}");
    // Replace PrisonDir by a file between the check and the start: the start's own config
    // pass refuses it; a start that gets past it must not serve unjailed.
    fs::remove_dir_all(&httpd.prison).unwrap();
    let err = httpd
        .try_start()
        .expect_err("started without its PrisonDir");
    assert!(err.contains("PrisonDir"), "{err}");
}

#[test]
fn a_failing_bind_stops_the_start_naming_the_step() {
    // A directory bound onto a file inside: the mount fails in the holder, at start (and in
    // the dry run of `apache2 -t` before it, see httpd_configtest.rs).
    let mut httpd = Httpd::new(Setup::new(Mpm::Event).line("PrisonBind /usr /www/index.html"));
    let (ok, text) = httpd.config_test();
    assert!(!ok && text.contains("/www/index.html"), "{text}");
    let err = httpd
        .try_start()
        .expect_err("started although a bind failed");
    assert!(
        err.contains("cannot be built") && err.contains("/www/index.html"),
        "{err}"
    );
    assert!(httpd.jailed_processes().is_empty());
}

#[test]
fn a_prison_dir_removed_before_a_graceful_restart_stops_httpd() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event));
    httpd.start();
    let master = httpd.master();
    fs::remove_dir_all(&httpd.prison).unwrap();
    // `apache2 -k graceful` would read the configuration itself and refuse to signal: signal
    // the master directly, as an admin's script or logrotate might.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(master, libc::SIGUSR1) };
    let started = std::time::Instant::now();
    while common::alive(master) && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !common::alive(master),
        "httpd kept running without its PrisonDir"
    );
    assert!(
        httpd.error_log().contains("PrisonDir"),
        "{}",
        httpd.error_log()
    );
}

#[test]
fn a_failed_prison_build_stops_the_start() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event).fault("build"));
    let err = httpd
        .try_start()
        .expect_err("started although the prison was not built");
    assert!(
        err.contains("cannot be built, httpd will not start")
            && err.contains("build: fault injected"),
        "{err}"
    );
}

/// A child that fails at any step of being jailed exits, is logged, and never serves: httpd
/// (whose children all fail alike) does not come up, and not one request is answered.
#[test]
fn a_child_that_cannot_be_jailed_never_serves() {
    for mpm in [Mpm::Prefork, Mpm::Event] {
        for (step, logged) in [
            ("attach", "attaching to prison"),
            ("switch-user", "attaching to prison"),
            ("restrict", "attaching to prison"),
            ("verify", "not properly jailed"),
        ] {
            let mut httpd = Httpd::new(Setup::new(mpm).fault(step));
            let err = httpd
                .try_start()
                .expect_err("a child served although it could not be jailed");
            assert!(
                err.contains(logged) && err.contains(&format!("{step}: fault injected")),
                "{mpm:?} {step}: {err}"
            );
            assert!(
                common::http_get(httpd.port, "/").is_err(),
                "{mpm:?} {step}: something answered"
            );
        }
    }
}

#[test]
fn two_prisons_side_by_side_and_one_name_only_once() {
    let name = common::unique_name("shared");
    let mut first = Httpd::new(Setup::new(Mpm::Event).name(&name));
    first.start();
    let mut other = Httpd::new(Setup::new(Mpm::Prefork));
    other.start();
    assert_children_jailed(&first);
    assert_children_jailed(&other);
    assert_ne!(
        common::namespace(first.children()[0], "mnt"),
        common::namespace(other.children()[0], "mnt")
    );

    let mut twin = Httpd::new(Setup::new(Mpm::Event).name(&name));
    let err = twin
        .try_start()
        .expect_err("the same PrisonName started twice");
    assert!(
        err.contains(&format!(
            "another running httpd already uses PrisonName {name}"
        )),
        "{err}"
    );
    // The refusal touched nothing of the running one.
    assert_eq!(first.get("/").status, 200);
    assert_children_jailed(&first);
    first.stop_cleanly();
    other.stop_cleanly();
    // The name is free again once its httpd is gone.
    twin.start();
    twin.stop_cleanly();
}

#[test]
fn after_kill_9_of_httpd_the_next_start_serves_jailed() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event));
    httpd.start();
    httpd.crash();
    httpd.start();
    assert_children_jailed(&httpd);
    httpd.stop_cleanly();
}
