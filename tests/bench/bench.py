#!/usr/bin/env python3
"""make bench: what the prison costs, as ratios against an unjailed httpd in the same run.

A = httpd with the prison (PrisonSecurity ALL and the resource limits), B = the same httpd
without it, B2 = a second unjailed httpd to show the noise floor (A/A). Rounds are interleaved
so that whatever else the machine does hits both sides alike. Nothing here asserts a time:
the script prints ratios with their spread and exits non-zero only if a run failed.

Run as root: make bench (BENCH_QUICK=1 for a short smoke run).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 3 if QUICK else 10
DURATION = 1 if QUICK else 3
START_CHILDREN = 32 if QUICK else 256
SCALE_CHILDREN = 64 if QUICK else 1000
TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1

# The prison under test: every feature that costs something at attach or per syscall.
PRISON_LINES = [
    "PrisonSecurity ALL",
    f"PrisonCPU 0-{CPUS - 1}" if CPUS > 1 else "PrisonCPU 0",
    "PrisonMemory 4G 8G",
    "PrisonProcesses 16384",
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

    def __init__(self, label, jailed, mpm="event", children=2):
        self.label, self.jailed = label, jailed
        self.root = Path(f"/tmp/mod_prison-bench.{os.getpid()}.{label}")
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
            lines += [f'PrisonDir "{prison}"', f"PrisonName bench-{label}",
                      'DocumentRoot "/www"', 'ScriptAlias /cgi-bin/ "/cgi-bin/"'] + PRISON_LINES
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


def wrk(port, path, seconds=DURATION, conns=8):
    out = run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"]).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        raise RuntimeError(f"wrk saw errors on port {port}{path}:\n{out}")
    return rps, requests


def spread(values):
    return statistics.median(values), min(values), max(values)


def fmt(values, digits=3):
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} (min {lo:.{digits}f}, max {hi:.{digits}f})"


RESULTS = []


def report(name, values, goal, better="higher", note=""):
    med, lo, hi = spread(values)
    line = f"| {name} | {fmt(values)} | {goal} | {note} |"
    RESULTS.append(line)
    print(line, flush=True)


def bench_static_and_cpu():
    a, b, b2 = Httpd("A", True), Httpd("B", False), Httpd("B2", False)
    try:
        for h in (a, b, b2):
            h.start()
        for h in (a, b, b2):  # warm up
            wrk(h.port, "/1k.html", seconds=1)
        ab, aa, cpu = [], [], []
        for r in range(ROUNDS):
            order = [a, b, b2] if r % 2 == 0 else [b2, b, a]
            rps, per_req = {}, {}
            for h in order:
                t0 = h.cpu_ticks()
                rps[h.label], n = wrk(h.port, "/1k.html")
                per_req[h.label] = (h.cpu_ticks() - t0) / n
            ab.append(rps["A"] / rps["B"])
            aa.append(rps["B2"] / rps["B"])
            cpu.append(per_req["A"] / per_req["B"] if per_req["B"] else float("nan"))
        noise = f"A/A noise {fmt(aa)}"
        inside = min(aa) <= statistics.median(ab) <= max(aa)
        report("Static 1 KiB throughput A/B (event)", ab, ">= 0.98",
               note=noise + ("; within noise" if inside else "; outside noise"))
        report("CPU per request A/B (children utime+stime)", cpu, "<= 1.03")
        report("A/A: second unjailed httpd / unjailed", aa, "1.00 (noise floor)")
    finally:
        for h in (a, b, b2):
            h.cleanup()


def bench_cgi_and_syscalls():
    a, b = Httpd("A", True), Httpd("B", False)
    try:
        for h in (a, b):
            h.start()
        cgi, sys_ratio = [], []
        for r in range(max(3, ROUNDS // 2)):
            rps = {h.label: wrk(h.port, "/cgi-bin/probe", seconds=DURATION)[0]
                   for h in ([a, b] if r % 2 == 0 else [b, a])}
            cgi.append(rps["A"] / rps["B"])
            per_call = {}
            for h in (a, b):
                body = json.loads(get(h.port, "/cgi-bin/probe?syscalls=2000000"))
                per_call[h.label] = body["syscalls"]["total_ns"] / body["syscalls"]["calls"]
            sys_ratio.append(per_call["A"] / per_call["B"])
        report("CGI throughput A/B (fork+exec inside the prison)", cgi, ">= 0.97")
        report("Syscall loop inside a CGI A/B (getppid)", sys_ratio, "<= 1.05",
               note="the seccomp filter's cost")
    finally:
        for h in (a, b):
            h.cleanup()


def rss_kib(pids_):
    values = []
    for p in pids_:
        s = status(p, "VmRSS")
        if s:
            values.append(int(s[0]))
    return statistics.mean(values) if values else 0.0


def attach_costs(log):
    return [int(m) for m in re.findall(r"attached to prison \S+ in (\d+) us", log)]


def bench_child_start():
    starts, rss = [], []
    attach = []
    for r in range(3 if not QUICK else 1):
        t = {}
        rs = {}
        for label, jailed in (("A", True), ("B", False)) if r % 2 == 0 else (("B", False), ("A", True)):
            h = Httpd(f"start{label}", jailed, mpm="prefork", children=START_CHILDREN)
            try:
                t[label] = h.start(want_children=START_CHILDREN)
                rs[label] = rss_kib([p for p in h.children() if uid(p) == 33])
                if jailed:
                    attach += attach_costs(h.error_log())
            finally:
                h.cleanup()
        starts.append(t["A"] / t["B"])
        rss.append(rs["A"] - rs["B"])
    report(f"Start of {START_CHILDREN} prefork children A/B", starts, "<= 1.2")
    med, lo, hi = spread(attach)
    line = (f"| Attach per child (namespaces, cgroups, seccomp, Landlock), us | {med:.0f} "
            f"(min {lo}, max {hi}, n={len(attach)}) | - | measured in the child |")
    RESULTS.append(line)
    print(line, flush=True)
    line = f"| RSS per prefork child A - B, KiB | {fmt(rss, 0)} | <= 64 | VmRSS mean |"
    RESULTS.append(line)
    print(line, flush=True)


def bench_scale():
    h = Httpd("scale", True, mpm="prefork", children=SCALE_CHILDREN)
    try:
        up = h.start(want_children=SCALE_CHILDREN, patience=600)
        log = h.error_log()
        errors = log.count("[prison:emerg]")
        attached = len(attach_costs(log))
        built = re.findall(r"built in (\d+) us", log)
        down = h.stop()
        leftover = [p for p in pids() if status(p, "Uid") and Path(f"/proc/{p}").exists()
                    and h.root.as_posix() in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        line = (f"| Scale: {SCALE_CHILDREN} prefork children | up in {up:.2f} s, {attached} attached, "
                f"{errors} errors; prison built in {int(built[0]) / 1000 if built else float('nan'):.1f} ms; "
                f"stop and teardown {down:.2f} s, {len(leftover)} left | 0 errors | |")
        RESULTS.append(line)
        print(line, flush=True)
        if errors:
            raise RuntimeError(f"{errors} attach errors at scale")
    finally:
        h.cleanup()


def main():
    if os.geteuid() != 0:
        sys.exit("make bench must run as root (httpd jails its children)")
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: make deps")
    print(f"mod_prison benchmarks, {time.strftime('%Y-%m-%d')}, {os.uname().release}, "
          f"{CPUS} CPUs, {ROUNDS} rounds of {DURATION} s", flush=True)
    print("| Figure | Median ratio (spread) | Goal | Note |\n|---|---|---|---|", flush=True)
    failed = False
    for bench in (bench_static_and_cpu, bench_cgi_and_syscalls, bench_child_start, bench_scale):
        try:
            bench()
        except Exception as e:  # report and go on: one failed figure must not hide the others
            failed = True
            print(f"| {bench.__name__} | FAILED: {e} | | |", flush=True)
    out = REPO / "target/bench-results.md"
    out.write_text("\n".join(RESULTS) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
