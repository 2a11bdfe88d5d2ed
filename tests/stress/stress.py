#!/usr/bin/env python3
"""make stress: graceful restarts under load, jailed (A) against plain httpd (B) in one run.

For each of event and prefork: A (jailed) and two plain httpds B and B2 serve a 1 KiB file to
wrk (8 keep-alive connections each) while all get RESTARTS graceful restarts, one every 0.6 s.
Plain httpd itself loses a few keep-alive reads at each graceful restart, so plain httpd is the
yardstick: A should not fail more than the worse of B and B2 (plus 10% and 2 requests of
slack), and may have no connect error and no non-2xx answer. The failure counts swing widely from run to run (plain
against plain differs by up to 2x), and with cgroups or PrisonIP on, some runs show the prison
above the plain pair and others below: whether it adds failures is not settled yet. So the
comparison is printed, and fatal only with STRESS_STRICT=1; connect errors, non-2xx answers,
deaths, prison errors and leftovers are always fatal.
"""

import ctypes
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from httpd import Httpd, pids  # noqa: E402

RESTARTS = int(os.environ.get("STRESS_RESTARTS", "50"))
INTERVAL = 0.6


def namespaces():
    held = set()
    for pid in pids():
        for kind in ("mnt", "net", "ipc", "uts", "cgroup"):
            try:
                held.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
            except OSError:
                pass
    return held


def mounts():
    # `ip netns add` (the network tests) leaves its /run/netns bind mount by design.
    with open("/proc/self/mountinfo") as f:
        return {m for m in (line.split()[4] for line in f) if not m.startswith("/run/netns")}


def prison_cgroups():
    found = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith("prison-"):  # every prison's cgroup: prison-<name>.<n>
                found.add(os.path.join(root, d))
    return found


def bpf_programs():
    """Every BPF program id on the host (BPF_PROG_GET_NEXT_ID)."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 32)()
    ids, current = set(), 0
    while True:
        attr[0], attr[1] = current, 0
        # SYS_bpf = 321 on x86_64, BPF_PROG_GET_NEXT_ID = 11
        if libc.syscall(321, 11, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
            return ids
        current = attr[1]
        ids.add(current)


def state():
    return {"namespaces": namespaces(), "mounts": mounts(), "cgroups": prison_cgroups(),
            "bpf programs": bpf_programs()}


def load(port, seconds, out):
    result = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--timeout", "10s",
                             f"http://127.0.0.1:{port}/1k.html"], text=True, capture_output=True)
    text = result.stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    connect, read, write, timeout = map(int, errors.groups()) if errors else (0, 0, 0, 0)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out.update(requests=int(re.search(r"(\d+) requests in", text).group(1)),
               connect=connect, failed=read + write + timeout,
               non2xx=int(non2xx.group(1)) if non2xx else 0)


def run_mpm(mpm):
    a = Httpd(f"stress{mpm}A", True, mpm=mpm, children=8)
    b = Httpd(f"stress{mpm}B", False, mpm=mpm, children=8)
    b2 = Httpd(f"stress{mpm}B2", False, mpm=mpm, children=8)
    everyone = (a, b, b2)
    problems = []
    try:
        for h in everyone:
            h.start()
        results = {h.label: {} for h in everyone}
        seconds = int(RESTARTS * INTERVAL) + 4
        loads = [threading.Thread(target=load, args=(h.port, seconds, results[h.label]))
                 for h in everyone]
        for t in loads:
            t.start()
        time.sleep(1)
        for i in range(RESTARTS):
            for h in (everyone if i % 2 == 0 else everyone[::-1]):
                h.graceful()
            time.sleep(INTERVAL)
        for t in loads:
            t.join()
        ra, rb, rb2 = (results[h.label] for h in everyone)
        allowed = int(max(rb["failed"], rb2["failed"]) * 1.1) + 2
        print(f"{mpm}: {RESTARTS} graceful restarts under load | jailed: {ra} | plain: {rb} | "
              f"plain again: {rb2} | jailed may fail {allowed}", flush=True)
        if ra["connect"]:
            problems.append(f"{mpm}: {ra['connect']} connect errors with the prison")
        if ra["non2xx"]:
            problems.append(f"{mpm}: {ra['non2xx']} non-2xx answers with the prison")
        if ra["failed"] > allowed:
            verdict = (f"{mpm}: the prison failed {ra['failed']} requests, plain httpd "
                       f"{rb['failed']} and {rb2['failed']}")
            if os.environ.get("STRESS_STRICT") == "1":
                problems.append(verdict)
            else:
                print("WARNING (fatal with STRESS_STRICT=1):", verdict, flush=True)
        for h in everyone:
            if h.master is None or not Path(f"/proc/{h.master}").exists():
                problems.append(f"{mpm}: {h.label} died during the restarts:\n{h.error_log()[-2000:]}")
        emerg = a.error_log().count("[prison:emerg]")
        if emerg:
            problems.append(f"{mpm}: {emerg} prison errors in the log")
    finally:
        for h in everyone:
            h.cleanup()
    return problems


def main():
    if os.geteuid() != 0:
        sys.exit("make stress must run as root")
    before = state()
    problems = []
    for mpm in os.environ.get("STRESS_MPMS", "event prefork").split():
        problems += run_mpm(mpm)
    time.sleep(1)
    after = state()
    for what in before:
        left = after[what] - before[what]
        print(f"after stop: {len(left)} new {what}", flush=True)
        if left:
            problems.append(f"left after stop: {what}: {sorted(left)[:10]}")
    for p in problems:
        print("FAIL:", p, flush=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
