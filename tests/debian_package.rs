//! The Debian package (`make deb`) installed on this host and used as an admin would:
//! `apt install ./libapache2-mod-prison_*.deb && a2enmod prison && apache2ctl -t`, then removed
//! and purged. The host's apache2 service is never started or restarted: the maintainer scripts
//! run with `invoke-rc.d`, `service` and `systemctl` shadowed by a recorder, which must stay
//! silent. The host is restored (a2dismod, apt purge) even when the test fails.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "libapache2-mod-prison";
const MODULE: &str = "/usr/lib/apache2/modules/mod_prison.so";
const LOAD: &str = "/etc/apache2/mods-available/prison.load";
const CONF: &str = "/etc/apache2/mods-available/prison.conf";
const ENABLED: &str = "/etc/apache2/mods-enabled/prison.load";
const DOC: &str = "/usr/share/doc/libapache2-mod-prison";

/// (success, stdout + stderr) of a command run with `path` first in PATH.
fn run(path: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let search = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        path.display()
    );
    let out = Command::new(program)
        .args(args)
        .env("PATH", search)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env_remove("APACHE_CONFDIR")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// apt-get, waiting for the dpkg lock rather than failing when another apt runs.
fn apt_get(path: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["-y", "-q", "-o", "DPkg::Lock::Timeout=600"];
    all.extend(args);
    run(path, "apt-get", &all)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// A scratch directory: the package, and the recorder that shadows the service managers.
struct Host {
    scratch: PathBuf,
    shims: PathBuf,
    calls: PathBuf,
}

impl Host {
    fn new() -> Self {
        let scratch = PathBuf::from(format!("/tmp/mod_prison-deb.{}", common::unique_name("d")));
        let shims = scratch.join("shims");
        fs::create_dir_all(&shims).expect("mkdir shims");
        let calls = scratch.join("service-calls");
        for tool in ["invoke-rc.d", "service", "systemctl", "start-stop-daemon"] {
            let shim = shims.join(tool);
            fs::write(
                &shim,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> {}\nexit 0\n",
                    calls.display()
                ),
            )
            .expect("writing a shim");
            fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).expect("chmod shim");
        }
        Self {
            scratch,
            shims,
            calls,
        }
    }

    fn service_calls(&self) -> String {
        fs::read_to_string(&self.calls).unwrap_or_default()
    }

    /// What this test changed, undone in the order an admin would: disable, then purge.
    fn restore(&self) {
        if Path::new(ENABLED).exists() {
            let _ = run(&self.shims, "a2dismod", &["-q", "prison"]);
        }
        if installed() || Path::new(LOAD).exists() {
            let _ = apt_get(&self.shims, &["purge", PACKAGE]);
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.restore();
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// The pid in Debian's apache2 pid file, if that process is alive (the host's own server).
fn host_apache2() -> Option<String> {
    let pid = fs::read_to_string("/var/run/apache2/apache2.pid").ok()?;
    let pid = pid.trim().to_owned();
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[test]
fn package_installs_enables_configtests_and_purges_without_touching_apache2() {
    common::require_environment();
    // Never clobber a mod_prison this host has from elsewhere (make install, another package).
    for path in [MODULE, LOAD, CONF, ENABLED] {
        assert!(
            !Path::new(path).exists() && !installed(),
            "{path} already exists on this host: remove it (or the package) before this test"
        );
    }
    let host = Host::new();
    let before = host_apache2();

    let started = std::time::Instant::now();
    let (ok, deb) = run(
        &host.shims,
        "bash",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/deb/build"),
            common::module().to_str().expect("UTF-8 path"),
            host.scratch.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(ok, "packaging/deb/build failed:\n{deb}");
    let deb = deb.trim().to_owned();
    let name = Path::new(&deb).file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with("libapache2-mod-prison_") && name.ends_with(".deb"),
        "{deb}"
    );
    eprintln!("built {deb} in {:?}", started.elapsed());
    let (_, info) = run(&host.shims, "dpkg-deb", &["-f", &deb, "Depends"]);
    assert!(info.contains("apache2-api-20120211"), "Depends: {info}");
    if Path::new("/usr/bin/lintian").exists() {
        let (_, text) = run(&host.shims, "lintian", &[&deb]);
        let tags: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
            .collect();
        assert!(tags.is_empty(), "lintian:\n{text}");
    }

    // Negative control: before the package, httpd does not know the directives.
    let (ok, text) = run(
        &host.shims,
        "apache2ctl",
        &["-t", "-c", "PrisonDir relative"],
    );
    assert!(
        !ok && text.contains("Invalid command 'PrisonDir'"),
        "without the package:\n{text}"
    );

    let (ok, text) = apt_get(&host.shims, &["install", &deb]);
    assert!(ok, "apt-get install {deb}:\n{text}");
    for path in [
        MODULE,
        LOAD,
        CONF,
        &format!("{DOC}/copyright"),
        &format!("{DOC}/changelog.gz"),
    ] {
        assert!(Path::new(path).is_file(), "{path} not installed:\n{text}");
    }
    assert!(
        !Path::new(ENABLED).exists(),
        "installing enabled the module"
    );
    assert!(text.contains("installed, not enabled"), "{text}");

    let (ok, text) = run(&host.shims, "a2enmod", &["prison"]);
    assert!(ok && Path::new(ENABLED).exists(), "a2enmod prison:\n{text}");
    let (ok, text) = run(&host.shims, "apache2ctl", &["-t"]);
    assert!(ok && text.contains("Syntax OK"), "apache2ctl -t:\n{text}");
    let (ok, text) = run(&host.shims, "apache2ctl", &["-M"]);
    assert!(
        ok && text.contains("prison_module"),
        "apache2ctl -M:\n{text}"
    );
    // The installed module is the one answering: its own configtest error.
    let (ok, text) = run(
        &host.shims,
        "apache2ctl",
        &["-t", "-c", "PrisonDir relative"],
    );
    assert!(
        !ok && text.contains("PrisonDir: \"relative\" is not an absolute path"),
        "with the package:\n{text}"
    );

    // Removed while enabled, as an admin might: prerm disables it, nothing is restarted.
    let (ok, text) = apt_get(&host.shims, &["remove", PACKAGE]);
    assert!(ok, "apt-get remove:\n{text}");
    assert!(!Path::new(MODULE).exists(), "{MODULE} left after remove");
    assert!(
        !Path::new(ENABLED).exists(),
        "remove left the module enabled, so apache2 would not start:\n{text}"
    );
    assert!(Path::new(CONF).exists(), "remove took the conffile");
    let (ok, text) = run(&host.shims, "apache2ctl", &["-t"]);
    assert!(ok, "apache2ctl -t after remove:\n{text}");
    let (ok, text) = apt_get(&host.shims, &["purge", PACKAGE]);
    assert!(ok, "apt-get purge:\n{text}");
    for path in [LOAD, CONF, DOC] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }

    assert_eq!(
        host.service_calls(),
        "",
        "the maintainer scripts called a service manager"
    );
    assert_eq!(
        host_apache2(),
        before,
        "the host's apache2 was started, stopped or restarted"
    );
}
