"""A real httpd for the benchmarks and the stress run (Python twin of tests/common/httpd.rs):
jailed (PrisonDir and PRISON_LINES) or not, same files and MPM, on 127.0.0.1."""

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CPUS = os.cpu_count() or 1

# The prison under test: every feature that costs something at attach or per syscall.
PRISON_LINES = [
    "PrisonSecurity ALL",
    f"PrisonCPU 0-{CPUS - 1}" if CPUS > 1 else "PrisonCPU 0",
    "PrisonMemory 4G 8G",
    "PrisonProcesses 16384",
    # The prison's own address on the loopback: cgroup-BPF on every socket, Listen unaffected.
    "PrisonIP 127.0.0.1",
]
if os.environ.get("BENCH_PRISON"):  # e.g. BENCH_PRISON="PrisonSecurity None" to isolate a cost
    PRISON_LINES = os.environ["BENCH_PRISON"].split(";")

def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def build():
    cargo = os.environ.get("CARGO", "cargo")
    run([cargo, "build", "--release", "--lib", "--quiet"], cwd=REPO)
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static",
               CARGO_TARGET_DIR=str(REPO / "target/probe"))
    run([cargo, "build", "--release", "--quiet", "--manifest-path", "tests/probe/Cargo.toml",
         "--target", "x86_64-unknown-linux-gnu"], cwd=REPO, env=env)
    libexec = run(["apxs", "-q", "LIBEXECDIR"]).stdout.strip()
    return (REPO / "target/release/libmod_prison.so",
            REPO / "target/probe/x86_64-unknown-linux-gnu/release/prison-probe", libexec)


MODULE, PROBE, LIBEXEC = build()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mpm_lines(mpm, children):
    if mpm == "prefork":
        return [f"ServerLimit {children}", f"StartServers {children}",
                f"MinSpareServers {children}", f"MaxSpareServers {children}",
                f"MaxRequestWorkers {children}", "MaxConnectionsPerChild 0"]
    return ["ServerLimit 2", "StartServers 2", "ThreadsPerChild 25", "MinSpareThreads 25",
            "MaxSpareThreads 50", "MaxRequestWorkers 50", "MaxConnectionsPerChild 0"]


class Httpd:
    """One httpd under /tmp/mod_prison-bench.*; jailed or not, same files, same MPM."""

    def __init__(self, label, jailed, mpm="event", children=2, chroot=False):
        """`chroot`: an unjailed httpd that serves the same paths as the jailed one (mod_unixd's
        ChrootDir into the same tree), so the two do the same work per request."""
        self.label, self.jailed = label, jailed
        self.root = Path(f"/tmp/mod_prison-tool.{os.getpid()}.{label}")
        shutil.rmtree(self.root, ignore_errors=True)
        prison = self.root / "prison"
        for d in (self.root, prison, prison / "www", prison / "cgi-bin", self.root / "run"):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        (prison / "www/1k.html").write_bytes(b"x" * 1024)
        shutil.copy(PROBE, prison / "cgi-bin/probe")
        self.port = free_port()
        cgi = ("cgi_module", "mod_cgi.so") if mpm == "prefork" else ("cgid_module", "mod_cgid.so")
        lines = [
            f'ServerRoot "{self.root}"', "ServerName localhost",
            f"Listen 127.0.0.1:{self.port}", f'PidFile "{self.root}/httpd.pid"',
            f'DefaultRuntimeDir "{self.root}/run"', f'ErrorLog "{self.root}/error.log"',
            "LogLevel notice prison:debug", "TypesConfig /etc/mime.types",
            f"LoadModule mpm_{mpm}_module {LIBEXEC}/mod_mpm_{mpm}.so",
            f"LoadModule authz_core_module {LIBEXEC}/mod_authz_core.so",
            f"LoadModule mime_module {LIBEXEC}/mod_mime.so",
            f"LoadModule alias_module {LIBEXEC}/mod_alias.so",
            f"LoadModule {cgi[0]} {LIBEXEC}/{cgi[1]}",
            f"LoadModule prison_module {MODULE}",
            "User www-data", "Group www-data", "KeepAlive On", "MaxKeepAliveRequests 0",
            '<Directory "/">', "    Require all granted", "</Directory>",
        ] + mpm_lines(mpm, children)
        if jailed:
            lines += [f'PrisonDir "{prison}"', f"PrisonName bench-{label}-{os.getpid()}",
                      'DocumentRoot "/www"', 'ScriptAlias /cgi-bin/ "/cgi-bin/"'] + PRISON_LINES
        elif chroot:
            lines += [f'ChrootDir "{prison}"', 'DocumentRoot "/www"',
                      'ScriptAlias /cgi-bin/ "/cgi-bin/"']
        else:
            lines += [f'DocumentRoot "{prison}/www"', f'ScriptAlias /cgi-bin/ "{prison}/cgi-bin/"']
        self.conf = self.root / "httpd.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.master = None

    def apache2(self, *args):
        return subprocess.run(["apache2", "-T", "-f", str(self.conf), *args],
                              text=True, capture_output=True)

    def error_log(self):
        try:
            return (self.root / "error.log").read_text()
        except FileNotFoundError:
            return ""

    def children(self):
        if self.master is None:
            return []
        return [p for p in pids() if ppid(p) == self.master]

    def start(self, want_children=None, patience=120):
        """Starts and waits until want_children children run as www-data and / is served.
        Returns the seconds that took."""
        t0 = time.monotonic()
        out = self.apache2("-k", "start")
        if out.returncode != 0:
            raise RuntimeError(f"{self.label}: start failed: {out.stderr}\n{self.error_log()}")
        while time.monotonic() - t0 < patience:
            try:
                self.master = int((self.root / "httpd.pid").read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.01)
                continue
            kids = [p for p in self.children() if uid(p) == 33]
            if want_children is None or len(kids) >= want_children:
                if get(self.port, "/1k.html"):
                    return time.monotonic() - t0
            time.sleep(0.01)
        raise RuntimeError(f"{self.label}: not up in {patience}s\n{self.error_log()[-2000:]}")

    def stop(self):
        """Stops and waits until every process of this instance is gone; returns seconds."""
        if self.master is None:
            return 0.0
        t0 = time.monotonic()
        members = set(self.children()) | {self.master}
        self.apache2("-k", "stop")
        while any(alive(p) for p in members) and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        for p in members:
            if alive(p):
                os.kill(p, 9)
        self.master = None
        return elapsed

    def graceful(self):
        out = self.apache2("-k", "graceful")
        if out.returncode != 0:
            raise RuntimeError(f"{self.label}: graceful failed: {out.stderr}")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def cpu_ticks(self):
        total = 0
        for p in self.children():
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (FileNotFoundError, IndexError):
                pass
        return total


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def processes_of(root):
    """Every process whose command line mentions `root` (an instance's ServerRoot)."""
    found = []
    for pid in pids():
        try:
            if str(root) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(pid)
        except OSError:  # gone meanwhile
            pass
    return found


def status(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].split()
    except FileNotFoundError:
        pass
    return None


def ppid(pid):
    s = status(pid, "PPid")
    return int(s[0]) if s else None


def uid(pid):
    s = status(pid, "Uid")
    return int(s[1]) if s else None


def alive(pid):
    s = status(pid, "State")
    return bool(s) and s[0] != "Z"


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.read()
    except OSError:
        return None


def wrk(port, path, seconds, conns=8):
    out = run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"]).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        raise RuntimeError(f"wrk saw errors on port {port}{path}:\n{out}")
    return rps, requests
