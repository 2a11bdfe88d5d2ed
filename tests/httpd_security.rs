//! PrisonSecurity on a real httpd: the probe's attack battery run as a CGI inside the prison
//! under ALL, IPC and None (prefork with mod_cgi, event with mod_cgid), the children's state
//! checked from outside through /proc, and a negative control for every attack: the same
//! attempt with `PrisonSecurity None`, or as root outside any prison, is not refused the way
//! ALL refuses it, so no check passes by accident.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use common::{Httpd, Mpm, Setup, Value};

const EPERM: i64 = libc::EPERM as i64;
const EACCES: i64 = libc::EACCES as i64;
const ENOENT: i64 = libc::ENOENT as i64;
const ENOSYS: i64 = libc::ENOSYS as i64;
const EAFNOSUPPORT: i64 = libc::EAFNOSUPPORT as i64;

/// What an attempt gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Ok,
    Errno(i64),
    Signal(i64),
}

fn seen(result: &Value) -> Seen {
    if result["ok"] == true {
        Seen::Ok
    } else if let Some(signal) = result["signal"].as_i64() {
        Seen::Signal(signal)
    } else {
        Seen::Errno(result["errno"].as_i64().unwrap_or(-1))
    }
}

/// Landlock's signal scope came with ABI 6 (Linux 6.12).
const SIGNAL_SCOPE_ABI: i64 = 6;

/// The running kernel's Landlock ABI (0: none).
fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag, landlock_create_ruleset
    // reads no memory and returns the ABI version or -1.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

/// Every attempt of the battery and what ALL answers on this kernel.
fn expected_under_all() -> BTreeMap<&'static str, Seen> {
    use Seen::*;
    let eperm = [
        "mount_tmpfs",
        "mount_proc",
        "umount",
        "pivot_root",
        "chroot",
        "fsopen",
        "open_tree",
        "quotactl",
        "unshare_user",
        "unshare_user_mnt",
        "unshare_user_net",
        "unshare_user_ipc",
        "unshare_user_uts",
        "unshare_user_pid",
        "unshare_user_cgroup",
        "clone_newuser",
        "setns",
        "sysv_msgget",
        "sysv_semget",
        "sysv_shmget",
        "init_module",
        "finit_module",
        "kexec_load",
        "reboot",
        "swapon",
        "settimeofday",
        "clock_settime",
        "sethostname",
        "iopl",
        "ioperm",
        "acct",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "name_to_handle_at",
        "open_by_handle_at",
        "ptrace_traceme",
        "ptrace_parent",
        "process_vm_readv",
        "kcmp",
        "pidfd_getfd",
        // Landlock's signal scope.
        "kill_host_process",
        "socket_inet_raw",
        "socket_inet6_raw",
        "socket_netlink_netfilter",
        "socket_netlink_audit",
        "ioctl_setflags",
        "ioctl_setflags_high_bits",
        "ioctl_tiocsti",
        "setuid_0",
        "capset_setuid",
        "personality_linux32",
    ];
    let mut all: BTreeMap<&str, Seen> = eperm.iter().map(|&n| (n, Errno(EPERM))).collect();
    for name in [
        "clone3",
        "io_uring_setup",
        "x32_getpid",
        "syscall_after_table",
    ] {
        all.insert(name, Errno(ENOSYS));
    }
    for name in ["socket_packet", "socket_vsock"] {
        all.insert(name, Errno(EAFNOSUPPORT));
    }
    // Landlock: nothing outside the prison root opens, even through a host descriptor.
    for name in ["leaked_fd_openat", "leaked_fd_fchdir"] {
        all.insert(name, Errno(EACCES));
    }
    // No capability: port 80 is privileged.
    all.insert("bind_port_80", Errno(EACCES));
    // No /proc in the prison, and mounting one is refused above.
    all.insert("proc_1_root", Errno(ENOENT));
    // A foreign architecture's syscall entry kills (SIGSYS).
    all.insert("int80_getpid", Signal(libc::SIGSYS.into()));
    // Before Landlock ABI 6 (e.g. Debian 12's Linux 6.1, in `make test-cgroup2`) nothing stops
    // a signal to a host process of the same user: the module says so at start (checked below).
    if landlock_abi() < SIGNAL_SCOPE_ABI {
        all.insert("kill_host_process", Ok);
    }
    // Ordinary work.
    for name in [
        "kill_parent",
        "socket_netlink_route",
        "socket_unix",
        "socket_inet",
        "temp_file",
    ] {
        all.insert(name, Ok);
    }
    all
}

/// Attempts no control can show possible on this kernel: it has no x32 ABI and no syscall
/// past the table, so they are ENOSYS for everyone (the seccomp unit tests cover the filter).
const NO_CONTROL_ON_THIS_KERNEL: [&str; 2] = ["x32_getpid", "syscall_after_table"];

/// A unix socket `fd.sock` in `socket_dir` on the host that hands every client a descriptor of
/// `dir` (a leaked host directory, as a compromised helper could pass it). It serves until the
/// test process exits.
fn start_fd_passer(socket_dir: &Path, dir: &Path) {
    fs::create_dir_all(socket_dir).unwrap();
    fs::set_permissions(socket_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let path = socket_dir.join("fd.sock");
    let listener = UnixListener::bind(&path).expect("binding the fd passer");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let dir = fs::File::open(dir).expect("opening the leaked directory");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            send_fd(stream.as_raw_fd(), dir.as_raw_fd());
        }
    });
}

fn send_fd(socket: i32, fd: i32) {
    let byte = [0u8];
    let iov = [IoSlice::new(&byte)];
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr; the pointers are set to live buffers below, and the
    // control buffer has room for one SCM_RIGHTS message with one descriptor.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut i32, fd);
        libc::sendmsg(socket, &msg, 0);
    }
}

/// A process of the children's user on the host, outside the prison.
fn host_process_of_the_user() -> Child {
    Command::new("sleep")
        .arg("120")
        .uid(common::USER_ID)
        .gid(common::USER_ID)
        .spawn()
        .expect("starting sleep as www-data")
}

/// One httpd with the level, a leaked-fd passer and a writable /tmp bound in.
struct Scene {
    httpd: Httpd,
    victim: Child,
}

impl Scene {
    fn start(mpm: Mpm, level: &str) -> Self {
        let mut httpd = Httpd::new(Setup::new(mpm).line(format!("PrisonSecurity {level}")));
        let sockets = httpd.root.join("sockets");
        start_fd_passer(&sockets, &httpd.root);
        let tmp = httpd.root.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
        httpd.append_config(&format!(
            "PrisonBind {} /sockets\nPrisonBind {} /tmp rw",
            sockets.display(),
            tmp.display()
        ));
        httpd.start();
        Self {
            httpd,
            victim: host_process_of_the_user(),
        }
    }

    fn query(&self) -> String {
        format!(
            "attack=1&fdpass=/sockets/fd.sock&tmp=/tmp&kill={}",
            self.victim.id()
        )
    }

    fn battery(&self) -> (Value, BTreeMap<String, Seen>) {
        let answer = self.httpd.probe(&self.query());
        let results = answer["attack"]["results"]
            .as_object()
            .unwrap_or_else(|| panic!("no battery results: {answer:#}"))
            .iter()
            .map(|(name, result)| (name.clone(), seen(result)))
            .collect();
        (answer, results)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = self.victim.kill();
        let _ = self.victim.wait();
    }
}

/// The battery as root outside any prison: what the kernel allows an unrestricted process.
fn battery_as_root_outside(scene: &Scene) -> BTreeMap<String, Seen> {
    let out = Command::new(common::probe_binary())
        .args(["attack=1", &format!("kill={}", scene.victim.id())])
        .output()
        .expect("running the probe as root");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    answer["attack"]["results"]
        .as_object()
        .expect("results")
        .iter()
        .map(|(name, result)| (name.clone(), seen(result)))
        .collect()
}

fn status_of_children(httpd: &Httpd) -> Vec<(i32, BTreeMap<&'static str, String>)> {
    let children = httpd.children();
    assert!(!children.is_empty(), "no children");
    children
        .into_iter()
        .map(|pid| {
            let fields = [
                "Seccomp",
                "NoNewPrivs",
                "CapBnd",
                "CapEff",
                "CapPrm",
                "CapInh",
                "CapAmb",
            ]
            .into_iter()
            .map(|f| (f, common::status_field(pid, f).unwrap_or_default()))
            .collect();
            (pid, fields)
        })
        .collect()
}

const NO_CAPS: &str = "0000000000000000";

#[test]
fn the_attack_battery_fails_under_all_and_each_attempt_has_a_negative_control() {
    let expected = expected_under_all();
    for mpm in [Mpm::Prefork, Mpm::Event] {
        let all = Scene::start(mpm, "ALL");
        let (answer, under_all) = all.battery();
        let what = format!("{mpm:?} ALL: {:#}", answer["attack"]);
        assert!(
            answer["attack"]["attempted"].as_u64().unwrap_or(0) >= 60,
            "{what}"
        );
        // The battery and the table agree on the list, so nothing is left unchecked.
        let names: Vec<&str> = under_all.keys().map(String::as_str).collect();
        let listed: Vec<&str> = expected.keys().copied().collect();
        assert_eq!(names, listed, "battery vs table");
        for (name, want) in &expected {
            assert_eq!(under_all[*name], *want, "{mpm:?} ALL {name}: {what}");
        }
        // The probe's own view: powerless, filtered.
        assert_eq!(answer["capabilities"]["bounding"], "0x0", "{answer:#}");
        assert_eq!(answer["capabilities"]["effective"], "0x0", "{answer:#}");
        assert_eq!(answer["no_new_privs"]["value"], 1, "{answer:#}");
        assert_eq!(answer["seccomp"]["mode"], 2, "{answer:#}");
        assert!(
            all.httpd
                .error_log()
                .contains("PrisonSecurity ALL: no capabilities"),
            "{}",
            all.httpd.error_log()
        );
        let unscoped = "signals and abstract unix sockets NOT scoped";
        assert_eq!(
            all.httpd.error_log().contains(unscoped),
            landlock_abi() < SIGNAL_SCOPE_ABI,
            "Landlock ABI {}, the module's start line must say whether signals are scoped:\n{}",
            landlock_abi(),
            all.httpd.error_log()
        );
        let root_outside = battery_as_root_outside(&all);
        drop(all);

        let none = Scene::start(mpm, "None");
        let (answer, under_none) = none.battery();
        let what = format!("{mpm:?} None: {:#}", answer["attack"]);
        assert_eq!(answer["seccomp"]["mode"], 0, "{what}");
        for (name, want) in &expected {
            let controls = [
                ("PrisonSecurity None", under_none.get(*name)),
                ("root outside", root_outside.get(*name)),
            ];
            if *want == Seen::Ok {
                assert_eq!(under_none[*name], Seen::Ok, "{mpm:?} None {name}: {what}");
                continue;
            }
            if NO_CONTROL_ON_THIS_KERNEL.contains(name) {
                continue;
            }
            assert!(
                controls
                    .iter()
                    .any(|(_, got)| got.is_some_and(|got| got != want)),
                "{mpm:?} {name}: refused as under ALL ({want:?}) by every control: {controls:?}"
            );
        }
        // The ones PrisonSecurity itself must make fail: an unprivileged prisoner can do them.
        for name in [
            "unshare_user",
            "clone_newuser",
            "clone3",
            "sysv_shmget",
            "io_uring_setup",
            "process_vm_readv",
            "leaked_fd_openat",
            "leaked_fd_fchdir",
            "kill_host_process",
            "int80_getpid",
            "socket_netlink_netfilter",
        ] {
            assert_eq!(under_none[name], Seen::Ok, "{mpm:?} None {name}: {what}");
        }
        drop(none);
    }
}

#[test]
fn ipc_allows_sysv_ipc_and_keeps_the_rest_of_all() {
    let expected = expected_under_all();
    let scene = Scene::start(Mpm::Prefork, "IPC");
    let (answer, under_ipc) = scene.battery();
    for (name, want) in &expected {
        let want = if name.starts_with("sysv_") {
            Seen::Ok
        } else {
            *want
        };
        assert_eq!(under_ipc[*name], want, "IPC {name}: {:#}", answer["attack"]);
    }
    // Its own IPC namespace: not the host's.
    let master = scene.httpd.master();
    for pid in scene.httpd.children() {
        assert_ne!(
            common::namespace(pid, "ipc"),
            common::namespace(master, "ipc")
        );
    }
}

#[test]
fn every_child_shows_seccomp_no_new_privs_and_no_capabilities_in_proc() {
    for mpm in Mpm::ALL {
        let mut httpd = Httpd::new(Setup::new(mpm).line("PrisonSecurity ALL"));
        httpd.start();
        for (pid, status) in status_of_children(&httpd) {
            let what = format!("{mpm:?} child {pid} ({}): {status:?}", common::cmdline(pid));
            assert_eq!(status["Seccomp"], "2", "{what}");
            assert_eq!(status["NoNewPrivs"], "1", "{what}");
            for set in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
                assert_eq!(status[set], NO_CAPS, "{what}: {set}");
            }
        }
        drop(httpd);
        // Ordinary work under ALL: threads, CGI fork/exec, DNS, temp files and a unix socket to
        // a host server (the ordinary way to reach a database).
        let scene = Scene::start(mpm, "ALL");
        let answer = scene.httpd.probe(&format!(
            "exec=/cgi-bin/probe&resolve=localhost&{}",
            scene.query()
        ));
        let what = format!("{mpm:?}: {answer:#}");
        assert_eq!(answer["exec"]["/cgi-bin/probe"]["ok"], true, "{what}");
        assert_eq!(answer["resolve"]["localhost"]["ok"], true, "{what}");
        assert_eq!(
            answer["attack"]["results"]["temp_file"]["ok"], true,
            "{what}"
        );
        assert_eq!(
            answer["attack"]["results"]["leaked_fd_openat"]["errno"], EACCES,
            "the unix socket connection itself must work: {what}"
        );
        if mpm != Mpm::Prefork {
            let threaded = scene.httpd.children().into_iter().any(|pid| {
                common::status_field(pid, "Threads")
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n > 1)
            });
            assert!(threaded, "{mpm:?}: no threaded child under ALL");
        }
    }
}

#[test]
fn under_none_children_keep_their_capability_bounding_set_and_no_filter() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Event).line("PrisonSecurity None"));
    httpd.start();
    for (pid, status) in status_of_children(&httpd) {
        assert_eq!(status["Seccomp"], "0", "child {pid}: {status:?}");
        assert_eq!(status["NoNewPrivs"], "0", "child {pid}: {status:?}");
        assert_ne!(status["CapBnd"], NO_CAPS, "child {pid}: {status:?}");
    }
}

#[test]
fn suexec_is_refused_at_config_time_unless_security_is_none() {
    let load = format!(
        "LoadModule suexec_module {}/mod_suexec.so",
        common::libexec()
    );
    for (level, refused) in [("ALL", true), ("IPC", true), ("None", false)] {
        let httpd = Httpd::new(
            Setup::new(Mpm::Prefork)
                .line(load.clone())
                .line(format!("PrisonSecurity {level}")),
        );
        let (ok, text) = httpd.config_test();
        assert_eq!(ok, !refused, "{level}: {text}");
        if refused {
            assert!(
                text.contains(&format!(
                    "PrisonSecurity {level} cannot work with mod_suexec"
                )),
                "{level}: {text}"
            );
        }
    }
}

/// PrisonSecurity changed between graceful restarts applies to the new generation: None then
/// ALL then None again, checked in every child's /proc status.
#[test]
fn a_changed_prison_security_applies_to_the_next_generation() {
    for mpm in [Mpm::Prefork, Mpm::Event] {
        let mut httpd = Httpd::new(Setup::new(mpm).line("PrisonSecurity None"));
        httpd.start();
        let mut previous = "PrisonSecurity None";
        for (level, seccomp, no_new_privs) in [("ALL", "2", "1"), ("None", "0", "0")] {
            let line = if level == "ALL" {
                "PrisonSecurity ALL"
            } else {
                "PrisonSecurity None"
            };
            httpd.replace_config_line(previous, line);
            previous = line;
            httpd.graceful();
            // A child forked a moment ago has not reached its drop_privileges hook yet.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                let wrong: Vec<_> = status_of_children(&httpd)
                    .into_iter()
                    .filter(|(_, st)| st["Seccomp"] != seccomp || st["NoNewPrivs"] != no_new_privs)
                    .collect();
                if wrong.is_empty() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{mpm:?} after graceful to {level}: children {wrong:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        httpd.stop_cleanly();
    }
}

/// With PrisonIP the prison shares the host's network namespace, and with it the abstract unix
/// sockets, which have no file for the mount namespace or Landlock's file rules to hide. Landlock
/// ABI 6 scopes them: a host server's abstract socket is out of reach under ALL and within
/// reach under None (the negative control). An older kernel cannot stop it, says so at start
/// (checked in the battery test), and this test expects the connection there.
#[test]
fn with_prison_ip_a_host_abstract_socket_is_out_of_reach_under_all() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("mod_prison_test.{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .expect("an abstract socket address");
    let _server = UnixListener::bind_addr(&address).expect("binding a host abstract socket");
    let scoped = landlock_abi() >= SIGNAL_SCOPE_ABI;
    for (level, refused) in [("ALL", scoped), ("None", false)] {
        let mut httpd = Httpd::new(
            Setup::new(Mpm::Prefork)
                .line(format!("PrisonSecurity {level}"))
                .line("PrisonIP 127.0.0.1"),
        );
        httpd.start();
        let probe = httpd.probe(&format!("abstract={name}"));
        let result = &probe["abstract"][&name];
        if refused {
            assert_eq!(result["errno"], EPERM, "{level}: {probe:#}");
        } else {
            assert_eq!(result["ok"], true, "{level}: {probe:#}");
        }
        httpd.stop_cleanly();
    }
}
