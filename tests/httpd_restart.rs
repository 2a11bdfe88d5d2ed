//! A graceful restart whose new prison cannot be built: httpd keeps serving, its new children
//! in the previous generation's prison (same namespaces and cgroups, jailed as before, seen
//! from /proc), the error log says so and what did not apply, the children hold none of the
//! carried descriptors; a restart with a fixed configuration builds a new prison, and stop
//! leaves nothing. At first start a failed build still refuses to start
//! (`httpd_prison.rs`).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Httpd, Mpm, Setup, USER_ID};

const NAMESPACES: [&str; 4] = ["mnt", "net", "ipc", "uts"];
const CARRIED: &str = "cannot be built for this generation";

/// The prison a child is in, from outside: its namespaces and its cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrisonOf {
    namespaces: Vec<Option<String>>,
    cgroups: BTreeSet<String>,
}

fn prison_of(pid: i32) -> PrisonOf {
    PrisonOf {
        namespaces: NAMESPACES
            .iter()
            .map(|k| common::namespace(pid, k))
            .collect(),
        cgroups: fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("prison-"))
            .map(str::to_owned)
            .collect(),
    }
}

/// What is wrong with a child, seen from /proc: not in the prison, not the User, no seccomp,
/// or holding a descriptor it must not (a namespace, PrisonDir, the PrisonName claim).
fn problem(httpd: &Httpd, pid: i32, claim: Option<u64>) -> Option<String> {
    let root = common::dev_ino(&PathBuf::from(format!("/proc/{pid}/root/")));
    if root != common::dev_ino(&httpd.prison) {
        return Some("root is not PrisonDir".into());
    }
    if common::ids(pid, "Uid") != [USER_ID; 4] {
        return Some(format!("uids {:?}", common::ids(pid, "Uid")));
    }
    if common::status_field(pid, "Seccomp").as_deref() != Some("2") {
        return Some("no seccomp filter".into());
    }
    let held = held_descriptors(httpd, pid, claim);
    (!held.is_empty()).then(|| format!("holds {held:?}"))
}

fn held_descriptors(httpd: &Httpd, pid: i32, claim: Option<u64>) -> Vec<String> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let claim = claim.map(|ino| format!("socket:[{ino}]"));
    entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|link| link.display().to_string())
        .filter(|link| {
            NAMESPACES
                .iter()
                .any(|k| link.starts_with(&format!("{k}:[")))
                || Path::new(link) == httpd.prison
                || Some(link) == claim.as_ref()
        })
        .collect()
}

/// The inode of the PrisonName claim socket (`@mod_prison/<name>` in /proc/net/unix).
fn claim_inode(name: &str) -> Option<u64> {
    let want = format!("@mod_prison/{name}");
    fs::read_to_string("/proc/net/unix")
        .ok()?
        .lines()
        .find(|l| l.split_whitespace().nth(7) == Some(want.as_str()))
        .and_then(|l| l.split_whitespace().nth(6)?.parse().ok())
}

/// Waits until every child is jailed (a child forked a moment ago is still root), then
/// returns the prison each is in.
fn jailed_children(httpd: &Httpd) -> Vec<(i32, PrisonOf)> {
    let claim = claim_inode(&httpd.name);
    assert!(claim.is_some(), "no claim socket for {}", httpd.name);
    let children = httpd.children();
    assert!(!children.is_empty(), "no children");
    let mut found = Vec::new();
    for pid in children {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match problem(httpd, pid, claim) {
                None => {
                    found.push((pid, prison_of(pid)));
                    break;
                }
                Some(_) if !common::alive(pid) => break,
                Some(p) if Instant::now() > deadline => {
                    panic!("child {pid} ({}): {p}", common::cmdline(pid))
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    found
}

/// The one prison all children are in.
fn the_prison(httpd: &Httpd, what: &str) -> PrisonOf {
    let prisons: Vec<PrisonOf> = jailed_children(httpd).into_iter().map(|(_, p)| p).collect();
    let first = prisons.first().cloned().expect("a jailed child");
    assert!(
        prisons.iter().all(|p| *p == first),
        "{what}: children in different prisons: {prisons:?}"
    );
    first
}

/// `pids.max` of the prison's pids cgroup (v1 `pids` line, or pure v2's one line).
fn pids_max(prison: &PrisonOf) -> Option<String> {
    let root = Path::new(common::CGROUP_ROOT);
    let unified = root.join("cgroup.controllers").exists();
    prison.cgroups.iter().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let dir = match (unified, controllers.split(',').any(|c| c == "pids")) {
            (true, _) => root.join(path.trim_start_matches('/')),
            (false, true) => root.join("pids").join(path.trim_start_matches('/')),
            (false, false) => return None,
        };
        Some(
            fs::read_to_string(dir.join("pids.max"))
                .ok()?
                .trim()
                .to_owned(),
        )
    })
}

fn stop_leaves_nothing(httpd: &mut Httpd, namespaces: &[PrisonOf]) {
    httpd.stop_cleanly();
    assert!(httpd.jailed_processes().is_empty());
    let cgroups = common::prison_cgroups(&httpd.name);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    for prison in namespaces {
        for (kind, ns) in NAMESPACES.iter().zip(&prison.namespaces) {
            let Some(ns) = ns else { continue };
            // Only this instance's processes count: the kernel reuses a dead namespace's
            // number, and other tests run httpds at the same time.
            let conf = httpd.conf.display().to_string();
            let ours = |pid: i32| {
                common::cmdline(pid).contains(&conf)
                    || common::dev_ino(&PathBuf::from(format!("/proc/{pid}/root/")))
                        == common::dev_ino(&httpd.prison)
            };
            let holders: Vec<String> = common::pids()
                .filter(|&pid| common::namespace(pid, kind).as_ref() == Some(ns) && ours(pid))
                .map(|pid| format!("{pid} {}", common::cmdline(pid)))
                .collect();
            assert!(
                holders.is_empty(),
                "namespace {ns} still held after stop by {holders:?}"
            );
        }
    }
}

#[test]
fn a_failed_build_at_a_restart_serves_from_the_previous_prison() {
    for mpm in [Mpm::Prefork, Mpm::Event] {
        let mut httpd = Httpd::new(Setup::new(mpm).fault("rebuild").line("PrisonProcesses 500"));
        // The fault hits only builds at a restart: the first start builds.
        httpd.start();
        let old = the_prison(&httpd, "first generation");
        assert_eq!(old.cgroups.len(), 1, "{mpm:?}: {old:?}");

        for round in 1..=2 {
            httpd.graceful();
            let now = the_prison(&httpd, "carried-over generation");
            // The control for the children's descriptors: the parent holds them all.
            let held = held_descriptors(&httpd, httpd.master(), claim_inode(&httpd.name));
            assert_eq!(held.len(), 6, "{mpm:?}: the parent holds {held:?}");
            assert_eq!(now, old, "{mpm:?} round {round}: not the previous prison");
            assert_eq!(httpd.get("/").body, common::INDEX);
            assert_eq!(httpd.probe("")["uid"], USER_ID, "{mpm:?} round {round}");
            let log = httpd.error_log();
            assert_eq!(log.matches(CARRIED).count(), round, "{mpm:?}: {log}");
            assert!(
                log.contains("rebuild: fault injected")
                    && log.contains("carried over")
                    && log.contains(
                        "the new configuration's prison settings are the previous generation's"
                    ),
                "{mpm:?}: {log}"
            );
        }
        // Room for the new generation's children beside the old ones: PrisonProcesses + twice
        // the MPM's ceiling (tests/common tuning: prefork 8 children, event 4 × 7 + cgid).
        let ceiling = if mpm == Mpm::Prefork { 8 } else { 4 * 7 + 1 };
        assert_eq!(
            pids_max(&old).as_deref(),
            Some((500 + 2 * ceiling).to_string().as_str()),
            "{mpm:?}"
        );
        // The monitor (about once a second) must not take the cgroup the children use.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(the_prison(&httpd, "after the monitor"), old, "{mpm:?}");
        assert!(
            httpd
                .error_log()
                .matches(": ready, children run as")
                .count()
                == 1,
            "{mpm:?}: only the first generation was built"
        );
        stop_leaves_nothing(&mut httpd, &[old]);
    }
}

/// The admin's case: a bind whose target lies under a file. The tree inside PrisonDir changes
/// after httpd started (a deploy replaced a directory by a file): `-t` refuses it, but a
/// restart signalled directly reads the configuration without the dry run, and the mount
/// fails in the new build.
#[test]
fn a_bind_target_under_a_file_at_a_restart_keeps_the_old_prison_until_fixed() {
    for mpm in [Mpm::Prefork, Mpm::Event] {
        let mut httpd = Httpd::new(Setup::new(mpm));
        let source = httpd.root.join("bound");
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("marker"), "bound\n").unwrap();
        let data = httpd.prison.join("data");
        fs::create_dir_all(&data).unwrap();
        httpd.append_config(&format!("PrisonBind \"{}\" /data/bound", source.display()));
        httpd.start();
        let old = the_prison(&httpd, "first generation");

        // The directory becomes a file, and a new setting comes with the restart.
        fs::remove_dir_all(&data).unwrap();
        fs::write(&data, "now a file\n").unwrap();
        httpd.append_config("PrisonProcesses 300");
        // apachectl -t (and so apache2ctl graceful) now refuses it: its dry run makes the
        // mounts. A restart signalled without it must still keep serving, jailed.
        let (ok, text) = httpd.config_test();
        assert!(
            !ok && text.contains("/data/bound") && text.contains("Not a directory"),
            "the dry run of -t refuses the bind: {text}"
        );
        httpd.graceful_by_signal();
        assert_eq!(the_prison(&httpd, "carried over"), old, "{mpm:?}");
        assert_eq!(httpd.get("/").body, common::INDEX);
        let log = httpd.error_log();
        let line = log
            .lines()
            .find(|l| l.contains(CARRIED))
            .unwrap_or_else(|| panic!("{mpm:?}: no carry-over line: {log}"));
        assert!(line.contains("[prison:error]"), "{line}");
        assert!(
            line.contains("/data/bound") && line.contains("Not a directory"),
            "{line}"
        );
        assert!(
            line.contains("do not apply: PrisonProcesses 300;")
                && line.contains("stay in force instead: none"),
            "{line}"
        );

        // Fixed: the next restart builds a new prison, with the bind and the new limit.
        fs::remove_file(&data).unwrap();
        fs::create_dir(&data).unwrap();
        httpd.graceful_by_signal();
        let new = the_prison(&httpd, "rebuilt");
        assert_ne!(
            new.namespaces[0], old.namespaces[0],
            "{mpm:?}: same mount namespace"
        );
        assert_eq!(
            new.cgroups.len(),
            1,
            "{mpm:?}: the new limit's cgroup: {new:?}"
        );
        assert_eq!(
            httpd
                .error_log()
                .matches(": ready, children run as")
                .count(),
            2
        );
        let seen = httpd.probe("read=/data/bound/marker");
        assert!(seen.to_string().contains("bound"), "{seen}");
        stop_leaves_nothing(&mut httpd, &[old, new]);
    }
}

/// A PrisonBind source removed between `apachectl -t` and a restart by SIGUSR1: `-t` refuses
/// it now, but the restart's own configuration pass leaves it to the build, which fails, and
/// the old prison serves; once the source is back, a restart builds a new prison.
#[test]
fn a_bind_source_removed_before_a_restart_keeps_the_old_prison_until_it_is_back() {
    for mpm in [Mpm::Prefork, Mpm::Event] {
        let mut httpd = Httpd::new(Setup::new(mpm));
        let source = httpd.root.join("bound");
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("marker"), "bound\n").unwrap();
        httpd.append_config(&format!("PrisonBind \"{}\" /bound", source.display()));
        let (ok, text) = httpd.config_test();
        assert!(ok, "{text}");
        httpd.start();
        let old = the_prison(&httpd, "first generation");

        fs::remove_dir_all(&source).unwrap();
        let (ok, text) = httpd.config_test();
        assert!(
            !ok && text.contains("does not exist"),
            "-t still checks it: {text}"
        );
        httpd.graceful_by_signal();
        assert_eq!(the_prison(&httpd, "carried over"), old, "{mpm:?}");
        assert_eq!(httpd.get("/").body, common::INDEX);
        let log = httpd.error_log();
        let line = log
            .lines()
            .find(|l| l.contains(CARRIED))
            .unwrap_or_else(|| panic!("{mpm:?}: no carry-over line: {log}"));
        assert!(line.contains(&source.display().to_string()), "{line}");

        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("marker"), "bound\n").unwrap();
        httpd.graceful_by_signal();
        let new = the_prison(&httpd, "rebuilt");
        assert_ne!(new.namespaces[0], old.namespaces[0], "{mpm:?}");
        let seen = httpd.probe("read=/bound/marker");
        assert!(seen.to_string().contains("bound"), "{seen}");
        stop_leaves_nothing(&mut httpd, &[old, new]);
    }
}

#[test]
fn when_neither_a_new_nor_the_carried_prison_can_be_had_httpd_stops() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event).fault("rebuild,carry-over"));
    httpd.start();
    let master = httpd.master();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(master, libc::SIGUSR1) };
    let started = Instant::now();
    while common::alive(master) && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !common::alive(master),
        "httpd kept running without a prison"
    );
    let log = httpd.error_log();
    assert!(
        log.contains("nor can the previous generation's be carried over")
            && log.contains("carry-over: fault injected"),
        "{log}"
    );
}

/// With PrisonIP, the carried prison keeps its cgroup2 cgroup and so its socket programs: a
/// bind to another loopback address is still refused after the failed restart, one to the
/// prison's address still works.
#[test]
fn a_carried_prison_keeps_prison_ip() {
    let mut httpd = Httpd::new(
        Setup::new(Mpm::Event)
            .fault("rebuild")
            .line("PrisonIP 127.0.0.1"),
    );
    httpd.start();
    let old = the_prison(&httpd, "first generation");
    let query = "bind=127.0.0.1:0&bind=127.0.0.2:0";
    for when in ["before", "after"] {
        let seen = httpd.probe(query);
        assert!(
            common::ok_at(&seen, "bind", "127.0.0.1:0"),
            "{when}: {seen}"
        );
        assert!(
            !common::ok_at(&seen, "bind", "127.0.0.2:0"),
            "{when}: {seen}"
        );
        if when == "before" {
            httpd.graceful();
            assert!(httpd.error_log().contains(CARRIED));
            assert_eq!(the_prison(&httpd, "carried over"), old);
        }
    }
    stop_leaves_nothing(&mut httpd, &[old]);
}

/// Successful restarts close what the previous generation carried: the parent's descriptors
/// do not grow, and it holds one prison's namespaces (the control: the count it holds is
/// what a prison has).
#[test]
fn successful_restarts_close_the_carried_prison() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event).line("PrisonProcesses 100"));
    httpd.start();
    httpd.graceful();
    let master = httpd.master();
    let count = move || fs::read_dir(format!("/proc/{master}/fd")).unwrap().count();
    let before = count();
    let held = held_descriptors(&httpd, httpd.master(), claim_inode(&httpd.name));
    assert_eq!(held.len(), 6, "{held:?}");
    for _ in 0..5 {
        httpd.graceful();
    }
    assert_eq!(
        count(),
        before,
        "the parent's descriptors grew over 5 restarts"
    );
    let held = held_descriptors(&httpd, httpd.master(), claim_inode(&httpd.name));
    assert_eq!(held.len(), 6, "{held:?}");
    httpd.stop_cleanly();
}
