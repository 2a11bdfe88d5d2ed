//! `apache2 -t` is a dry run: the prison is built once in a throwaway process (every mount, the
//! cgroup plan, PrisonIP's programs through the verifier), so what would fail at start fails
//! here, naming the directive's line. And the mount plan itself: binds parents first, the
//! module's own mounts never over an admin's, a private /tmp, /var/run as on the host.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{ok_at, Httpd, Mpm, Setup};

/// `apache2 -t` must refuse, saying each of `needles`.
fn refused(httpd: &Httpd, needles: &[&str]) -> String {
    let (ok, text) = httpd.config_test();
    assert!(!ok, "apache2 -t accepted it:\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    text
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// "line N of FILE" of the configuration's line that starts with `start`.
fn line_of(httpd: &Httpd, start: &str) -> String {
    let conf = fs::read_to_string(&httpd.conf).expect("reading httpd.conf");
    let n = conf
        .lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line {start:?}"))
        + 1;
    format!("line {n} of {}", httpd.conf.display())
}

// ---------------------------------------------------------------------------------------------
// Mount order (issue 19: Apache's test suite puts DefaultRuntimeDir inside its rw bind)

/// A read-write PrisonBind that contains DefaultRuntimeDir: the runtime dir is the admin's,
/// writable, and mod_cgid's socket in it is still reached (event).
fn runtime_dir_inside_a_rw_bind(mpm: Mpm) {
    let mut httpd = Httpd::new(Setup::new(mpm));
    let site = httpd.root.join("site");
    let logs = site.join("logs");
    mkdir(&site, 0o755);
    mkdir(&logs, 0o777);
    httpd.append_config(&format!(
        "DefaultRuntimeDir \"{}\"\nPrisonBind {} {} rw",
        logs.display(),
        site.display(),
        site.display()
    ));
    httpd.start();
    let marker = logs.join("marker");
    let v = httpd.probe(&format!("write={}", marker.display()));
    assert!(
        ok_at(&v, "write", &marker.display().to_string()),
        "the CGI could not write in the runtime dir inside its rw bind: {v:#}"
    );
    assert_eq!(
        fs::read_to_string(&marker).expect("the marker on the host"),
        "written by the probe\n"
    );
}

#[test]
fn a_runtime_dir_inside_a_rw_bind_stays_writable_prefork() {
    runtime_dir_inside_a_rw_bind(Mpm::Prefork);
}

#[test]
fn a_runtime_dir_inside_a_rw_bind_stays_writable_event() {
    runtime_dir_inside_a_rw_bind(Mpm::Event);
}

#[test]
fn a_runtime_dir_that_would_hide_bound_files_is_refused() {
    // The ServerRoot's path inside the prison shows another host directory, which has a run/
    // of its own: the read-only runtime dir would cover it.
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    let other = httpd.root.join("other");
    mkdir(&other.join("run"), 0o755);
    fs::write(other.join("run/data"), "admin's\n").unwrap();
    httpd.append_config(&format!(
        "PrisonBind {} {} rw",
        other.display(),
        httpd.root.display()
    ));
    let at = line_of(&httpd, "PrisonBind");
    refused(&httpd, &["DefaultRuntimeDir", "would hide", &at]);
    // Negative control: with nothing there, nothing is hidden.
    fs::remove_dir_all(other.join("run")).unwrap();
    let (ok, text) = httpd.config_test();
    assert!(ok, "{text}");
}

// ---------------------------------------------------------------------------------------------
// The dry run

#[test]
fn a_good_configuration_passes_the_dry_run_and_leaves_nothing() {
    let mut httpd = Httpd::new(
        Setup::new(Mpm::Event)
            .line("PrisonIP 127.0.0.1")
            .line("PrisonMemory 256M 1G")
            .line("PrisonProcesses 256")
            .line("PrisonBind /usr/share/zoneinfo /zoneinfo ro"),
    );
    let mounts = common::host_mounts();
    let (ok, text) = httpd.config_test();
    assert!(ok, "apache2 -t refused a good configuration:\n{text}");
    assert!(text.contains("Syntax OK"), "{text}");
    assert!(
        text.contains("dry run passed") && text.contains(" BPF programs verified"),
        "{text}"
    );
    assert!(
        !text.contains(" 0 BPF programs"),
        "PrisonIP's programs: {text}"
    );
    // Computed, not created.
    assert!(common::prison_cgroups(&httpd.name).is_empty());
    assert_eq!(common::host_mounts(), mounts);
    // The PrisonName claim is not part of it: -t passes while the same httpd runs (as
    // `apache2ctl graceful` does), and the running one keeps serving.
    httpd.start();
    let (ok, text) = httpd.config_test();
    assert!(ok, "apache2 -t refused while its httpd runs:\n{text}");
    assert_eq!(httpd.get("/").status, 200);
}

#[test]
fn a_bind_target_under_a_file_is_refused_with_its_line() {
    // The issue: `PrisonBind /etc/wordpress /etc/hosts/wp` where /etc/hosts is a file.
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    fs::create_dir_all(httpd.prison.join("etc")).unwrap();
    fs::write(httpd.prison.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    httpd.append_config("PrisonBind /usr/share/zoneinfo /etc/hosts/wp");
    let at = line_of(&httpd, "PrisonBind");
    refused(
        &httpd,
        &[
            "dry run of prison",
            "PrisonBind /usr/share/zoneinfo /etc/hosts/wp ro",
            &at,
            "Not a directory",
        ],
    );
}

#[test]
fn a_directory_bound_onto_a_file_in_prison_dir_is_refused() {
    let httpd = Httpd::new(Setup::new(Mpm::Event).line("PrisonBind /usr /www/index.html"));
    refused(
        &httpd,
        &["PrisonBind /usr /www/index.html ro", "Not a directory"],
    );
    // Negative control: the same bind onto a directory.
    let httpd = Httpd::new(Setup::new(Mpm::Event).line("PrisonBind /usr /www/usr"));
    let (ok, text) = httpd.config_test();
    assert!(ok, "{text}");
}

#[test]
fn a_file_bound_onto_a_directory_in_prison_dir_is_refused() {
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    let file = httpd.root.join("file.txt");
    fs::write(&file, "a file\n").unwrap();
    httpd.append_config(&format!("PrisonBind {} /www", file.display()));
    let at = line_of(&httpd, "PrisonBind");
    refused(&httpd, &["PrisonBind", "/www ro", &at, "Is a directory"]);
}

#[test]
fn two_targets_led_to_one_place_by_a_symlink_in_prison_dir_are_refused() {
    // /data -> /www inside: the second bind lands on the first and hides it, whether the
    // symlink is the target's last component or one above it.
    for (first, second) in [("/www", "/data"), ("/www/x", "/data/x")] {
        let httpd = Httpd::new(Setup::new(Mpm::Event));
        std::os::unix::fs::symlink("/www", httpd.prison.join("data")).unwrap();
        let a = httpd.root.join("a");
        let b = httpd.root.join("b");
        mkdir(&a, 0o755);
        mkdir(&b, 0o755);
        httpd.append_config(&format!(
            "PrisonBind {} {first}\nPrisonBind {} {second}",
            a.display(),
            b.display()
        ));
        let at = line_of(&httpd, "PrisonBind");
        refused(
            &httpd,
            &[
                "still visible",
                &format!("{first} ro ({at})"),
                "hidden by a later mount",
            ],
        );
    }
    let a = Path::new("/usr/share/zoneinfo");
    // Negative control: the symlink alone (a target through it) is fine.
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    std::os::unix::fs::symlink("/www", httpd.prison.join("data")).unwrap();
    httpd.append_config(&format!("PrisonBind {} /data/sub", a.display()));
    let (ok, text) = httpd.config_test();
    assert!(ok, "{text}");
}

#[test]
fn a_bind_into_a_read_only_bind_is_refused() {
    // The mount point of the second cannot be made inside the first, read-only, one.
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    let outer = httpd.root.join("outer");
    mkdir(&outer, 0o755);
    httpd.append_config(&format!(
        "PrisonBind /usr/share/zoneinfo /data/inner\nPrisonBind {} /data",
        outer.display()
    ));
    refused(&httpd, &["/data/inner", "Read-only file system"]);
    // Negative control: parents first, so with the mount point there it works, in any order.
    mkdir(&outer.join("inner"), 0o755);
    let (ok, text) = httpd.config_test();
    assert!(ok, "{text}");
}

#[test]
fn without_root_the_dry_run_is_skipped_and_says_so() {
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    // A configuration the dry run would refuse.
    httpd.append_config("PrisonBind /usr /www/index.html");
    // (The harness makes the ServerRoot 0755, so www-data reads the configuration.)
    let out = Command::new("setpriv")
        .args([
            "--reuid=33",
            "--regid=33",
            "--clear-groups",
            "apache2",
            "-T",
            "-t",
            "-f",
        ])
        .arg(&httpd.conf)
        .env_remove("APACHE_CONFDIR")
        .output()
        .expect("running setpriv apache2 -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("dry run of the prison was skipped") && text.contains("Syntax OK"),
        "{text}"
    );
    // Negative control: as root the same configuration is refused.
    refused(&httpd, &["Not a directory"]);
}

#[test]
fn a_bad_prison_tmp_is_a_syntax_error() {
    for bad in ["PrisonTmp lots", "PrisonTmp 0", "PrisonTmp 1k"] {
        let httpd = Httpd::new(Setup::new(Mpm::Event).line(bad));
        let at = line_of(&httpd, "PrisonTmp");
        refused(&httpd, &["PrisonTmp: ", &at]);
    }
}

// ---------------------------------------------------------------------------------------------
// Debian paths: a private /tmp, /var/run -> /run

#[test]
fn every_prison_has_a_private_sized_tmp() {
    let mut httpd = Httpd::new(Setup::new(Mpm::Prefork).line("PrisonTmp 8M"));
    httpd.start();
    let v = httpd.probe("write=/tmp/upload");
    assert!(ok_at(&v, "write", "/tmp/upload"), "{v:#}");
    // Not the host's /tmp: nothing was written there.
    assert!(!Path::new("/tmp/upload").exists());
    let master = httpd.master();
    let child = httpd.children()[0];
    let mountinfo = fs::read_to_string(format!("/proc/{child}/mountinfo")).unwrap();
    let tmp = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/tmp"))
        .unwrap_or_else(|| panic!("no /tmp mount in the child ({master}):\n{mountinfo}"));
    assert!(
        tmp.contains("nosuid") && tmp.contains("nodev") && tmp.contains(" tmpfs "),
        "{tmp}"
    );
    assert!(tmp.contains("size=8192k"), "{tmp}");
    let mode = fs::metadata(format!("/proc/{child}/root/tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o1777, "the prison's /tmp");
}

#[test]
fn prison_dirs_own_tmp_and_prison_tmp_off_mean_no_tmpfs() {
    let tmpfs_in_child = |httpd: &Httpd| {
        let child = httpd.children()[0];
        fs::read_to_string(format!("/proc/{child}/mountinfo"))
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some("/tmp"))
    };
    let mut httpd = Httpd::new(Setup::new(Mpm::Prefork));
    mkdir(&httpd.prison.join("tmp"), 0o1777);
    fs::write(httpd.prison.join("tmp/admins"), "PrisonDir's own\n").unwrap();
    httpd.start();
    assert!(!tmpfs_in_child(&httpd));
    let v = httpd.probe("read=/tmp/admins");
    assert!(ok_at(&v, "read", "/tmp/admins"), "{v:#}");
    drop(httpd);
    let mut httpd = Httpd::new(Setup::new(Mpm::Prefork).line("PrisonTmp off"));
    httpd.start();
    assert!(!tmpfs_in_child(&httpd));
    // Negative control: the default makes one.
    let mut httpd = Httpd::new(Setup::new(Mpm::Prefork));
    httpd.start();
    assert!(tmpfs_in_child(&httpd));
}

#[test]
fn var_run_is_a_symlink_to_run_as_on_the_host_with_the_runtime_dir_there() {
    let host_var_run = fs::canonicalize("/var/run").unwrap();
    assert_eq!(
        host_var_run,
        Path::new("/run"),
        "this test needs a host whose /var/run is a symlink to /run (Debian)"
    );
    // The runtime dir as Debian names it (/var/run/apache2), under event: mod_cgid's socket
    // there must be reached through the prison's /var/run.
    let unique = common::unique_name("mod_prison-run");
    let run = Path::new("/run").join(&unique);
    let mysqld = Path::new("/run").join(format!("{unique}-mysqld"));
    mkdir(&run, 0o755);
    mkdir(&mysqld, 0o755);
    fs::write(mysqld.join("mysqld.sock"), "a socket, in spirit\n").unwrap();
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for dir in &self.0 {
                let _ = fs::remove_dir_all(dir);
            }
        }
    }
    let _cleanup = Cleanup(vec![run.clone(), mysqld.clone()]);
    let mut httpd = Httpd::new(Setup::new(Mpm::Event));
    // An older module's leftover mount point, which must not block the link.
    mkdir(&httpd.prison.join("var/run").join(&unique), 0o755);
    httpd.append_config(&format!(
        "DefaultRuntimeDir /var/run/{unique}\nPrisonBind {} /run/mysqld",
        mysqld.display()
    ));
    httpd.start();
    let v = httpd.probe("read=/var/run/mysqld/mysqld.sock");
    assert!(ok_at(&v, "read", "/var/run/mysqld/mysqld.sock"), "{v:#}");
    let link = fs::read_link(httpd.prison.join("var/run")).expect("var/run is a symlink");
    assert_eq!(link, Path::new("/run"));
}

#[test]
fn the_private_tmp_counts_in_prison_memory() {
    // tmpfs pages are charged to the memory cgroup of the process that writes them, and stay
    // charged after it exits (v1 memory.usage_in_bytes and v2 memory.current count them).
    let mut httpd = Httpd::new(
        Setup::new(Mpm::Prefork)
            .line("PrisonMemory 0 1G")
            .line("PrisonTmp 64M"),
    );
    httpd.start();
    let usage = || -> u64 {
        let file = common::prison_cgroups(&httpd.name)
            .into_iter()
            .flat_map(|dir| {
                [
                    dir.join("memory.usage_in_bytes"),
                    dir.join("memory.current"),
                ]
            })
            .find(|f| f.exists())
            .expect("the prison's memory cgroup");
        fs::read_to_string(&file).unwrap().trim().parse().unwrap()
    };
    const MIB: u64 = 1 << 20;
    // Negative control: 32M written to /dev/null stay nowhere.
    let before = usage();
    let v = httpd.probe("write=/dev/null&write_size=32M");
    assert!(ok_at(&v, "write", "/dev/null"), "{v:#}");
    let after = usage();
    assert!(after < before + 16 * MIB, "{before} -> {after}");
    let before = after;
    let v = httpd.probe("write=/tmp/fill&write_size=32M");
    assert!(ok_at(&v, "write", "/tmp/fill"), "{v:#}");
    let after = usage();
    assert!(after >= before + 30 * MIB, "{before} -> {after}");
    // And beyond the size, the tmpfs is full.
    let v = httpd.probe("write=/tmp/more&write_size=40M");
    assert!(!ok_at(&v, "write", "/tmp/more"), "{v:#}");
    assert!(v.to_string().contains("ENOSPC"), "{v:#}");
}
