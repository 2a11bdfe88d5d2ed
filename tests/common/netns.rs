//! Network namespaces for the network tests: every address they use lives in namespaces the
//! test creates, so no packet leaves them. Deleted on drop, also when the test panics.
//!
//! Layout (documentation ranges only):
//! - **site** (the test's namespace; httpd, the probe and the local test servers run in it):
//!   `lo` up; `site0` (one end of a veth pair inside the site) with 192.0.2.1/24 (primary),
//!   192.0.2.10/24, 192.0.2.20/24, 2001:db8::10/64, 2001:db8::20/64;
//!   veth `site1` with 198.51.100.1/24 and 2001:db8:1::1/64 to
//! - **remote** (a test host in another namespace): `remote0` with 198.51.100.2/24 and
//!   2001:db8:1::2/64, routes back to the site's addresses.
//!
//! ICMP datagram ("ping") sockets are open to every group in the site, so that whether the
//! prison refuses them can be told apart from the kernel's own rule.
//!
//! A thread enters a namespace with `setns`; sockets it creates and processes it starts stay
//! there. The mount namespace is untouched (`ip netns exec` would remount /sys and hide the
//! cgroup hierarchies the prison needs).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

pub const PRISON_V4: &str = "192.0.2.10";
pub const PRISON_V6: &str = "2001:db8::10";
/// The site's primary address on the prison's route: the kernel's choice of source there.
pub const SITE_V4: &str = "192.0.2.1";
/// Another address of the site, on the same interface and route as the prison's.
pub const OTHER_V4: &str = "192.0.2.20";
pub const OTHER_V6: &str = "2001:db8::20";
/// The site's own address towards the remote host.
pub const SITE_LINK_V4: &str = "198.51.100.1";
pub const SITE_LINK_V6: &str = "2001:db8:1::1";
pub const REMOTE_V4: &str = "198.51.100.2";
pub const REMOTE_V6: &str = "2001:db8:1::2";

#[derive(Debug)]
pub struct TestNet {
    pub site: String,
    pub remote: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestNet {
    pub fn new() -> Self {
        let base = super::unique_name("mpt");
        let net = Self {
            site: format!("{base}-site"),
            remote: format!("{base}-remote"),
        };
        // From here on, Drop deletes whatever was created.
        let (site, remote) = (net.site.as_str(), net.remote.as_str());
        ip(&["netns", "add", site]);
        ip(&["netns", "add", remote]);
        // No duplicate address detection: addresses, link-local ones included, work at once.
        for name in [site, remote] {
            run_in(name, || {
                for conf in ["all", "default"] {
                    let path = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
                    std::fs::write(&path, "0").unwrap_or_else(|e| panic!("{path}: {e}"));
                }
            });
        }
        ip(&["-n", site, "link", "set", "lo", "up"]);
        ip(&["-n", remote, "link", "set", "lo", "up"]);
        // A veth pair inside the site (this kernel has no dummy driver).
        ip(&[
            "-n", site, "link", "add", "name", "site0", "type", "veth", "peer", "name", "site0p",
        ]);
        ip(&["-n", site, "link", "set", "site0p", "up"]);
        // 192.0.2.1 first: the primary address, which the kernel picks as source on this
        // route unless told otherwise.
        for addr in ["192.0.2.1/24", "192.0.2.10/24", "192.0.2.20/24"] {
            ip(&["-n", site, "addr", "add", addr, "dev", "site0"]);
        }
        for addr in ["2001:db8::10/64", "2001:db8::20/64"] {
            ip(&["-n", site, "addr", "add", addr, "dev", "site0", "nodad"]);
        }
        ip(&["-n", site, "link", "set", "site0", "up"]);
        ip(&[
            "-n", site, "link", "add", "name", "site1", "type", "veth", "peer", "name", "remote0",
            "netns", remote,
        ]);
        ip(&["-n", site, "addr", "add", "198.51.100.1/24", "dev", "site1"]);
        ip(&[
            "-n",
            site,
            "addr",
            "add",
            "2001:db8:1::1/64",
            "dev",
            "site1",
            "nodad",
        ]);
        ip(&["-n", site, "link", "set", "site1", "up"]);
        ip(&[
            "-n",
            remote,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "remote0",
        ]);
        ip(&[
            "-n",
            remote,
            "addr",
            "add",
            "2001:db8:1::2/64",
            "dev",
            "remote0",
            "nodad",
        ]);
        ip(&["-n", remote, "link", "set", "remote0", "up"]);
        ip(&[
            "-n",
            remote,
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            "198.51.100.1",
        ]);
        ip(&[
            "-n",
            remote,
            "route",
            "add",
            "2001:db8::/64",
            "via",
            "2001:db8:1::1",
        ]);
        net.run_in_site(|| {
            std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
                .expect("opening ping sockets to every group in the site namespace");
        });
        net
    }

    /// Runs `f` on a thread inside the site namespace.
    pub fn run_in_site<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.site, f)
    }

    /// Runs `f` on a thread inside the remote namespace.
    pub fn run_in_remote<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.remote, f)
    }

    /// Moves the calling thread into the site namespace until the guard is dropped.
    pub fn enter_site(&self) -> Entered {
        Entered::new(&self.site)
    }

    /// Whether `ip netns` still knows any of the two.
    pub fn exists(site: &str, remote: &str) -> bool {
        [site, remote]
            .iter()
            .any(|n| std::path::Path::new("/run/netns").join(n).exists())
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for name in [&self.site, &self.remote] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _entered = Entered::new(name);
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The calling thread is in a test namespace; dropping this brings it back.
#[derive(Debug)]
pub struct Entered {
    home: File,
}

impl Entered {
    fn new(name: &str) -> Self {
        let home = File::open("/proc/thread-self/ns/net").expect("opening the thread's netns");
        let target = File::open(format!("/run/netns/{name}"))
            .unwrap_or_else(|e| panic!("opening /run/netns/{name}: {e}"));
        if let Err(e) = setns(&target) {
            panic!("entering netns {name}: {e}");
        }
        Self { home }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // No panic in drop: it may run while unwinding.
        if let Err(e) = setns(&self.home) {
            eprintln!("returning to the test's netns: {e}");
        }
    }
}

fn setns(ns: &File) -> std::io::Result<()> {
    // SAFETY: `ns` is an open network namespace file; setns changes only this thread.
    match unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
