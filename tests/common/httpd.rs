//! Real Debian `apache2` instances with mod_prison loaded: their setup, start, stop and cleanup.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;

/// The user and group the children run as (Debian's).
pub const USER: &str = "www-data";
pub const USER_ID: u32 = 33;

/// How long a start, a restart or a stop may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// The three MPMs Debian ships as modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mpm {
    Prefork,
    Worker,
    Event,
}

impl Mpm {
    pub const ALL: [Mpm; 3] = [Mpm::Prefork, Mpm::Worker, Mpm::Event];

    pub fn name(self) -> &'static str {
        match self {
            Mpm::Prefork => "prefork",
            Mpm::Worker => "worker",
            Mpm::Event => "event",
        }
    }

    /// Small pools, so that a test's processes are few and quick to start.
    fn tuning(self) -> &'static str {
        match self {
            Mpm::Prefork => {
                "StartServers 2\nMinSpareServers 1\nMaxSpareServers 3\nMaxRequestWorkers 8\n"
            }
            Mpm::Worker | Mpm::Event => {
                "StartServers 2\nServerLimit 4\nThreadsPerChild 4\nMinSpareThreads 4\n\
                 MaxSpareThreads 8\nMaxRequestWorkers 16\n"
            }
        }
    }

    /// prefork runs CGIs with mod_cgi (forked by the child), threaded MPMs with mod_cgid's daemon.
    fn cgi_module(self) -> (&'static str, &'static str) {
        match self {
            Mpm::Prefork => ("cgi_module", "mod_cgi.so"),
            Mpm::Worker | Mpm::Event => ("cgid_module", "mod_cgid.so"),
        }
    }
}

/// Fails the test unless it can run a real httpd here.
pub fn require_environment() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the httpd integration tests must run as root (httpd starts as root and jails its children): sudo make test"
    );
    assert!(
        Path::new(libexec()).join("mod_mpm_event.so").exists(),
        "Debian's apache2 is not installed: make deps"
    );
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// httpd's module directory (`apxs -q LIBEXECDIR`).
pub fn libexec() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("apxs")
            .args(["-q", "LIBEXECDIR"])
            .output()
            .expect("running apxs -q LIBEXECDIR (make deps installs apache2-dev)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

fn cargo(args: &[&str], envs: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(repo())
        .status()
        .unwrap_or_else(|e| panic!("running {cargo} {args:?}: {e}"));
    assert!(status.success(), "{cargo} {args:?} failed");
}

/// The module under test: built once per test binary with the same PARANOID setting as the
/// tests (so a `make test PARANOID=0` tests a PARANOID=0 module).
pub fn module() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| build_module("httpd-tests", &[]))
}

/// The module built with the `fault-injection` feature: `PRISON_FAULT=<step>` in httpd's
/// environment makes that step fail (src/jail/fault.rs).
pub fn module_with_faults() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| build_module("httpd-tests-faults", &["--features", "fault-injection"]))
}

fn build_module(target: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["build", "--release", "--lib", "--quiet"];
    if !cfg!(feature = "paranoid") {
        args.push("--no-default-features");
    }
    args.extend(extra);
    let target = repo().join("target").join(target);
    let target = target.to_str().expect("UTF-8 path");
    cargo(&args, &[("CARGO_TARGET_DIR", target)]);
    Path::new(target).join("release/libmod_prison.so")
}

/// The test probe, a static binary run as a CGI inside the prison.
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let manifest = repo().join("tests/probe/Cargo.toml");
        let target = repo().join("target/probe");
        cargo(
            &[
                "build",
                "--release",
                "--quiet",
                "--manifest-path",
                manifest.to_str().expect("UTF-8 path"),
                "--target",
                "x86_64-unknown-linux-gnu",
            ],
            &[
                ("RUSTFLAGS", "-C target-feature=+crt-static"),
                ("CARGO_TARGET_DIR", target.to_str().expect("UTF-8 path")),
            ],
        );
        target.join("x86_64-unknown-linux-gnu/release/prison-probe")
    })
}

/// A name no other running test uses: prison names, cgroups and hostnames stay apart.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// How an instance is configured.
#[derive(Debug, Clone)]
pub struct Setup {
    pub mpm: Mpm,
    /// Whether to write `PrisonDir` (and `PrisonName`): false for negative controls, where the
    /// module is loaded but jails nothing.
    pub jailed: bool,
    /// Further lines in the server config (more Prison directives, or anything else).
    pub lines: Vec<String>,
    /// `PRISON_FAULT` for httpd: use the fault-injection module and fail these steps.
    pub faults: Option<String>,
    /// PrisonName; a unique one when unset.
    pub name: Option<String>,
    /// A cgroup v2 directory that `apache2 -k start` joins before it runs (else the test's).
    pub cgroup: Option<PathBuf>,
}

impl Setup {
    pub fn new(mpm: Mpm) -> Self {
        Self {
            mpm,
            jailed: true,
            lines: Vec::new(),
            faults: None,
            name: None,
            cgroup: None,
        }
    }

    /// Sets PrisonName (e.g. to make two instances share one).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Makes the named setup steps fail (comma-separated; see src/jail/fault.rs).
    pub fn fault(mut self, steps: &str) -> Self {
        self.faults = Some(steps.to_owned());
        self
    }

    /// Starts httpd in the cgroup v2 directory `dir`.
    pub fn cgroup(mut self, dir: &Path) -> Self {
        self.cgroup = Some(dir.to_owned());
        self
    }

    pub fn unjailed(mut self) -> Self {
        self.jailed = false;
        self
    }

    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }
}

/// One real httpd: its directories, its configuration and, once started, its master process.
#[derive(Debug)]
pub struct Httpd {
    pub setup: Setup,
    /// ServerRoot: configuration, logs, pid file, runtime directory.
    pub root: PathBuf,
    /// PrisonDir: `www/index.html` and `cgi-bin/probe` inside.
    pub prison: PathBuf,
    pub conf: PathBuf,
    pub port: u16,
    pub name: String,
    /// A file on the host that nothing inside the prison may read.
    pub secret: PathBuf,
    master: Option<i32>,
}

/// What a page served from inside the prison says.
pub const INDEX: &str = "served from inside the prison\n";

impl Httpd {
    /// Creates the directories and writes the configuration; does not start.
    pub fn new(setup: Setup) -> Self {
        require_environment();
        let module = match setup.faults {
            Some(_) => module_with_faults(),
            None => module(),
        }
        .to_owned();
        let probe = probe_binary();
        let unique = unique_name("t");
        let name = setup.name.clone().unwrap_or_else(|| unique.clone());
        let root = PathBuf::from(format!("/tmp/mod_prison-test.{unique}"));
        let _ = fs::remove_dir_all(&root);
        let prison = root.join("prison");
        for dir in [&root, &prison, &prison.join("www"), &prison.join("cgi-bin")] {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            // PARANOID: root-owned, not group/world writable; www-data must traverse.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        }
        fs::create_dir_all(root.join("run")).expect("mkdir run");
        fs::write(prison.join("www/index.html"), INDEX).expect("writing index.html");
        let cgi = prison.join("cgi-bin/probe");
        fs::copy(probe, &cgi).expect("copying the probe");
        fs::set_permissions(&cgi, fs::Permissions::from_mode(0o755)).expect("chmod probe");
        let secret = root.join("host-secret.txt");
        fs::write(&secret, "host secret\n").expect("writing the host marker");
        let mut httpd = Self {
            port: free_port(),
            conf: root.join("httpd.conf"),
            setup,
            root,
            prison,
            name,
            secret,
            master: None,
        };
        httpd.write_config(&module);
        httpd
    }

    fn write_config(&mut self, module: &Path) {
        let libexec = libexec();
        let Self { root, prison, .. } = self;
        let (root, prison) = (root.display(), prison.display());
        let (mpm, port) = (self.setup.mpm, self.port);
        let (cgi_name, cgi_so) = mpm.cgi_module();
        let mut conf = format!(
            "ServerRoot \"{root}\"\n\
             ServerName localhost\n\
             Listen 127.0.0.1:{port}\n\
             PidFile \"{root}/httpd.pid\"\n\
             DefaultRuntimeDir \"{root}/run\"\n\
             ErrorLog \"{root}/error.log\"\n\
             LogLevel notice prison:debug\n\
             TypesConfig /etc/mime.types\n\
             LoadModule mpm_{mpm}_module {libexec}/mod_mpm_{mpm}.so\n\
             LoadModule authz_core_module {libexec}/mod_authz_core.so\n\
             LoadModule mime_module {libexec}/mod_mime.so\n\
             LoadModule dir_module {libexec}/mod_dir.so\n\
             LoadModule alias_module {libexec}/mod_alias.so\n\
             LoadModule {cgi_name} {libexec}/{cgi_so}\n\
             LoadModule prison_module {module}\n\
             User {USER}\nGroup {USER}\n\
             {tuning}\
             <Directory \"/\">\n    Require all granted\n</Directory>\n",
            mpm = mpm.name(),
            module = module.display(),
            tuning = mpm.tuning(),
        );
        if self.setup.jailed {
            conf += &format!(
                "PrisonDir \"{prison}\"\nPrisonName {name}\nDocumentRoot \"/www\"\n\
                 ScriptAlias /cgi-bin/ \"/cgi-bin/\"\n",
                name = self.name
            );
        } else {
            // The same layout, seen from the host.
            conf += &format!(
                "DocumentRoot \"{prison}/www\"\nScriptAlias /cgi-bin/ \"{prison}/cgi-bin/\"\n"
            );
        }
        for line in &self.setup.lines {
            conf += line;
            conf.push('\n');
        }
        fs::write(&self.conf, conf).expect("writing httpd.conf");
    }

    /// Appends lines to the configuration (e.g. before a graceful restart).
    pub fn append_config(&self, lines: &str) {
        let mut conf = fs::read_to_string(&self.conf).expect("reading httpd.conf");
        conf += lines;
        conf.push('\n');
        fs::write(&self.conf, conf).expect("writing httpd.conf");
    }

    /// Replaces a line of the configuration (e.g. to change a directive before a graceful
    /// restart); panics if the line is not there.
    pub fn replace_config_line(&self, from: &str, to: &str) {
        let conf = fs::read_to_string(&self.conf).expect("reading httpd.conf");
        let mut found = false;
        let lines: Vec<&str> = conf
            .lines()
            .map(|line| {
                if line == from {
                    found = true;
                    to
                } else {
                    line
                }
            })
            .collect();
        assert!(found, "no line {from:?} in {}", self.conf.display());
        fs::write(&self.conf, lines.join("\n") + "\n").expect("writing httpd.conf");
    }

    fn apache2(&self, args: &[&str]) -> Output {
        let mut command = Command::new("apache2");
        if let Some(faults) = &self.setup.faults {
            command.env("PRISON_FAULT", faults);
        }
        // Opened here, written between fork and exec: only a write(2) happens in the child.
        let procs = self
            .setup
            .cgroup
            .as_ref()
            .filter(|_| args == ["-k", "start"])
            .map(|dir| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
                    .unwrap_or_else(|e| panic!("opening {}/cgroup.procs: {e}", dir.display()))
            });
        if let Some(procs) = procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd) {
            // SAFETY: the closure only calls write(2), which is async-signal-safe, on a
            // descriptor that stays open until `output` returns.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::write(procs, b"0".as_ptr().cast(), 1) == 1 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        command
            .arg("-T")
            .arg("-f")
            .arg(&self.conf)
            .args(args)
            .env_remove("APACHE_CONFDIR")
            .output()
            .expect("running apache2")
    }

    /// `apache2 -t`: (success, stdout + stderr).
    pub fn config_test(&self) -> (bool, String) {
        let out = self.apache2(&["-t"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.root.join("error.log")).unwrap_or_default()
    }

    fn pid_file(&self) -> Option<i32> {
        fs::read_to_string(self.root.join("httpd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts httpd and waits until it serves `/`. `Err` holds apache2's output and the error
    /// log when it does not come up.
    pub fn try_start(&mut self) -> Result<(), String> {
        self.master = None;
        let out = self.apache2(&["-k", "start"]);
        let started = Instant::now();
        let failure = |why: &str, this: &Self| {
            format!(
                "{why}\napache2: {}{}\nerror log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                this.error_log()
            )
        };
        if !out.status.success() {
            return Err(failure("apache2 -k start failed", self));
        }
        loop {
            if let Some(pid) = self.pid_file().filter(|&pid| alive(pid)) {
                self.master = Some(pid);
                if http_get(self.port, "/").is_ok_and(|r| r.status == 200) {
                    return Ok(());
                }
            } else if self.master.is_some() {
                return Err(failure("httpd exited after starting", self));
            } else if started.elapsed() > Duration::from_secs(1) && !self.any_process() {
                return Err(failure("httpd exited before it wrote its pid file", self));
            }
            if started.elapsed() > PATIENCE {
                return Err(failure("httpd did not serve / in time", self));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Whether any process runs with this instance's httpd.conf.
    fn any_process(&self) -> bool {
        let conf = self.conf.to_string_lossy();
        pids().any(|pid| alive(pid) && cmdline(pid).contains(conf.as_ref()))
    }

    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    pub fn master(&self) -> i32 {
        self.master.expect("httpd is not running")
    }

    /// The master's children (workers, the cgid daemon), as seen in /proc now.
    pub fn children(&self) -> Vec<i32> {
        let master = self.master();
        pids().filter(|&pid| ppid(pid) == Some(master)).collect()
    }

    /// Every process whose root is PrisonDir: children, CGIs, helpers of the prison.
    /// Empty when PrisonDir itself is gone.
    pub fn jailed_processes(&self) -> Vec<i32> {
        let Some(id) = dev_ino(&self.prison) else {
            return Vec::new();
        };
        let id = Some(id);
        pids()
            .filter(|pid| {
                fs::metadata(format!("/proc/{pid}/root/"))
                    .ok()
                    .map(|m| (m.dev(), m.ino()))
                    == id
            })
            .collect()
    }

    /// `GET path`, panicking on connection errors.
    pub fn get(&self, path: &str) -> Response {
        http_get(self.port, path).unwrap_or_else(|e| {
            panic!(
                "GET {path} on port {}: {e}\nerror log:\n{}",
                self.port,
                self.error_log()
            )
        })
    }

    /// Runs the probe as a CGI with `query` and returns its JSON answer.
    pub fn probe(&self, query: &str) -> Value {
        let response = self.get(&format!("/cgi-bin/probe?{query}"));
        assert_eq!(
            response.status,
            200,
            "probe answered {}: {}\nerror log:\n{}",
            response.status,
            response.body,
            self.error_log()
        );
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("probe answer is not JSON ({e}): {}", response.body))
    }

    /// `-k graceful`, then waits until every child belongs to the new generation and the
    /// server serves again.
    pub fn graceful(&mut self) {
        self.restart_by(|httpd| {
            let out = httpd.apache2(&["-k", "graceful"]);
            assert!(
                out.status.success(),
                "apache2 -k graceful: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    }

    /// A graceful restart by SIGUSR1 to the master, as an admin's script or logrotate sends
    /// it (`apache2 -k graceful` reads the configuration first and refuses a broken one), then
    /// waits as `graceful` does.
    pub fn graceful_by_signal(&mut self) {
        self.restart_by(|httpd| {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(httpd.master(), libc::SIGUSR1) };
        });
    }

    fn restart_by(&mut self, signal: impl FnOnce(&Self)) {
        let before: BTreeSet<i32> = self.children().into_iter().collect();
        let generation_marker = self
            .error_log()
            .matches("resuming normal operations")
            .count();
        signal(self);
        let started = Instant::now();
        loop {
            let resumed = self
                .error_log()
                .matches("resuming normal operations")
                .count()
                > generation_marker;
            let now: BTreeSet<i32> = self.children().into_iter().collect();
            if resumed
                && !now.is_empty()
                && now.is_disjoint(&before)
                && http_get(self.port, "/").is_ok_and(|r| r.status == 200)
            {
                return;
            }
            assert!(
                alive(self.master()),
                "httpd exited at graceful restart:\n{}",
                self.error_log()
            );
            assert!(
                started.elapsed() < PATIENCE,
                "graceful restart did not complete: children before {before:?}, now {now:?}\n{}",
                self.error_log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// `-k stop`, then waits until the master and every process of the prison are gone.
    /// Returns the processes that had to be killed (a test asserts it is empty).
    pub fn stop(&mut self) -> Vec<i32> {
        let Some(master) = self.master.take() else {
            return Vec::new();
        };
        let _ = self.apache2(&["-k", "stop"]);
        let started = Instant::now();
        while alive(master) && started.elapsed() < PATIENCE {
            sleep(Duration::from_millis(50));
        }
        let mut killed = Vec::new();
        if alive(master) {
            kill9(master);
            killed.push(master);
        }
        // Children and CGIs finish on their own shortly after the master.
        let started = Instant::now();
        while !self.jailed_processes().is_empty() && started.elapsed() < Duration::from_secs(5) {
            sleep(Duration::from_millis(50));
        }
        for pid in self.jailed_processes() {
            kill9(pid);
            killed.push(pid);
        }
        killed
    }

    /// `kill -9` of the master and of every child, as in a crash: waits until no process of
    /// the prison is left and forgets the pid file, so that the next start is a fresh one.
    pub fn crash(&mut self) {
        let mut victims = self.children();
        victims.push(self.master());
        self.master = None;
        for pid in victims {
            kill9(pid);
        }
        let started = Instant::now();
        while !self.jailed_processes().is_empty() && started.elapsed() < PATIENCE {
            sleep(Duration::from_millis(50));
        }
        assert_eq!(
            self.jailed_processes(),
            Vec::<i32>::new(),
            "jailed processes outlived kill -9"
        );
        let _ = fs::remove_file(self.root.join("httpd.pid"));
    }

    /// Asserts that stop left no process of this instance behind.
    pub fn stop_cleanly(&mut self) {
        let killed = self.stop();
        assert!(
            killed.is_empty(),
            "processes outlived httpd's stop and were killed: {killed:?}\n{}",
            self.error_log()
        );
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        self.stop();
        // Also processes that were started but never recorded (a failed start).
        if let Some(pid) = self.pid_file().filter(|&pid| alive(pid)) {
            kill9(pid);
        }
        for pid in self.jailed_processes() {
            kill9(pid);
        }
        // A name given by the test may be another instance's too (the twin that must be
        // refused): only an instance's own unique name is its alone to clean up.
        if self.setup.name.is_none() {
            remove_prison_cgroups(&self.name);
        }
        if !std::thread::panicking() || std::env::var_os("PRISON_KEEP_FAILED").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
