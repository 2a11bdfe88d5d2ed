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
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from httpd import CPUS, REPO, Httpd, get, processes_of, status, uid, wrk  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 3 if QUICK else 10
DURATION = 1 if QUICK else 3
START_CHILDREN = 32 if QUICK else 256
SCALE_CHILDREN = 64 if QUICK else 1000


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
            wrk(h.port, "/1k.html", 1)
        ab, aa, cpu = [], [], []
        for r in range(ROUNDS):
            order = [a, b, b2] if r % 2 == 0 else [b2, b, a]
            rps, per_req = {}, {}
            for h in order:
                t0 = h.cpu_ticks()
                rps[h.label], n = wrk(h.port, "/1k.html", DURATION)
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
        cgi, sys_ratio, floor = [], [], []
        for r in range(max(3, ROUNDS // 2)):
            rps = {h.label: wrk(h.port, "/cgi-bin/probe?quick=1", DURATION)[0]
                   for h in ([a, b] if r % 2 == 0 else [b, a])}
            cgi.append(rps["A"] / rps["B"])
            per_call = {}
            for h in (a, b):
                body = json.loads(get(h.port, "/cgi-bin/probe?syscalls=2000000"))
                per_call[h.label] = body["syscalls"]["total_ns"] / body["syscalls"]["calls"]
            sys_ratio.append(per_call["A"] / per_call["B"])
            body = json.loads(get(b.port, "/cgi-bin/probe?seccomp_floor=2000000"))["seccomp_floor"]
            floor.append(body["with_allow_all_ns"] / body["without_ns"])
        report("CGI throughput A/B (fork+exec inside the prison)", cgi, ">= 0.97")
        report("Syscall loop inside a CGI A/B (getppid)", sys_ratio, "<= 1.05",
               note="the seccomp filter's cost")
        report("Floor: the same loop under a 1-instruction allow-all filter / none", floor, "-",
               note="what any seccomp filter costs on this kernel")
    finally:
        for h in (a, b):
            h.cleanup()


def with_lines(h, lines):
    """Appends directives to a not yet started httpd's configuration."""
    h.conf.write_text(h.conf.read_text() + "\n".join(lines) + "\n")


def bench_connect():
    """PrisonConnect with 16 entries (A) against PrisonIP alone (B), and a second B (A/A).

    All three jailed as the others (PRISON_LINES: PrisonIP 127.0.0.1). "CGI connecting" asks each CGI to connect to its
    own httpd's port on 127.0.0.1: in A that destination is the 16th entry, after 15 that do
    not match, so every entry's check runs on each connect.
    """
    a, b, b2 = Httpd("connA", True), Httpd("connB", True), Httpd("connB2", True)
    try:
        entries = [f"198.51.100.{i}:{1000 + i}" for i in range(8)]
        entries += [f"203.0.113.{16 * i}/28" for i in range(4)]
        entries += [f"127.0.0.{i}:{a.port}" for i in range(2, 5)]
        entries += [f"127.0.0.1:{a.port}"]
        assert len(entries) == 16
        with_lines(a, ["PrisonConnect " + " ".join(entries)])
        for h in (a, b, b2):
            h.start()
        paths = {"static": "/1k.html", "cgi": "/cgi-bin/probe?quick=1"}
        ratios = {k: ([], []) for k in ("static", "cgi", "connect")}
        for r in range(ROUNDS if not QUICK else 3):
            order = [a, b, b2] if r % 2 == 0 else [b2, b, a]
            for kind in ratios:
                rps = {}
                for h in order:
                    path = paths.get(kind, f"/cgi-bin/probe?connect=127.0.0.1:{h.port}")
                    rps[h.label] = wrk(h.port, path, DURATION)[0]
                ratios[kind][0].append(rps["connA"] / rps["connB"])
                ratios[kind][1].append(rps["connB2"] / rps["connB"])
        # Each CGI really connected (allowed in A): one probe answer, checked.
        for h in (a, b):
            body = json.loads(get(h.port, f"/cgi-bin/probe?connect=127.0.0.1:{h.port}"))
            if not body["connect"][f"127.0.0.1:{h.port}"]["ok"]:
                raise RuntimeError(f"{h.label}: the CGI could not connect: {body}")
        for kind, name in (("static", "Static 1 KiB throughput"), ("cgi", "CGI throughput"),
                           ("connect", "CGI connecting to 127.0.0.1 throughput")):
            ab, aa = ratios[kind]
            inside = min(aa) <= statistics.median(ab) <= max(aa)
            report(f"PrisonConnect (16 entries) / PrisonIP alone: {name}", ab, "within A/A",
                   note=f"A/A noise {fmt(aa)}" + ("; within noise" if inside else "; outside noise"))
    finally:
        for h in (a, b, b2):
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
        leftover = processes_of(h.root)
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
    benches = (bench_static_and_cpu, bench_cgi_and_syscalls, bench_connect, bench_child_start,
               bench_scale)
    only = os.environ.get("BENCH_ONLY")  # e.g. BENCH_ONLY=bench_connect
    for bench in (b for b in benches if not only or b.__name__ == only):
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
