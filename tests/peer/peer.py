#!/usr/bin/env python3
"""make peer: Apache's own test suite, plain and in the prison, must fail the same subtests.

The suite is Debian's copy of httpd's perl-framework (Apache::Test bundled), from the source
package of the installed apache2 (`apt-get source`, checked by apt against the signed Sources
index), so nothing is fetched from anywhere but the Debian archive. Debian's own autopkgtest
(debian/tests/run-test-suite) runs it the same way: every module in mods-available, under each
MPM. For each MPM (PEER_MPMS, default "prefork event"; prefork with PHP, which is not thread
safe) it runs twice, each time in a fresh copy of the suite and in a network namespace of its
own (unshare --net --mount: only lo, a private /tmp; gone with its last process): once plain, once with
tests/peer/prison.conf.in added (PrisonSecurity ALL, PrisonIP 127.0.0.1, the suite's t/ and
/tmp bound read-write, the system read-only). httpd starts as root with User nobody (the prison
needs a root parent); the client runs as nobody (Apache::Test refuses root).

It prints per MPM and mode the files, subtests and failures, and the subtests that fail only
with the prison (failed, planned but not run, or a whole file skipped or dying only there);
it exits 1 if there are any, or if a run left a process, mount, namespace, prison cgroup or
BPF program of its own behind. Logs: target/peer/<mpm>-<mode>.log.
"""

import ctypes
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from httpd import pids  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = REPO / "target/peer"
MODS = Path("/etc/apache2/mods-available")
# The suite's own test modules, built by Debian but without a .load file (as run-test-suite).
TEST_MODULES = ("bucketeer", "case_filter", "case_filter_in")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


# ---- the suite, from Debian's apache2 source package ----

def source_versions():
    """The installed apache2's version first, then every source version apt knows: a mirror
    may list a security update's source before it serves its files."""
    installed = run(["dpkg-query", "-W", "-f=${Version}", "apache2-bin"]).stdout.strip()
    listed = re.findall(r"^Version: (\S+)", run(["apt-cache", "showsrc", "apache2"]).stdout, re.M)
    return [installed] + [v for v in listed if v != installed]


def suite():
    """Debian's perl-framework, downloaded once into target/peer. Returns (dir, version)."""
    versions = source_versions()
    for version in versions:
        framework = CACHE / f"apache2-{version.split(':', 1)[-1]}/debian/perl-framework"
        if (framework / "Makefile.PL").exists():
            return framework, version
    for version in versions:
        plain = version.split(":", 1)[-1]
        unpacked = CACHE / f"apache2-{plain}"
        download = CACHE / "download"
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        got = subprocess.run(["apt-get", "source", "--download-only", "-qq",
                              f"apache2={version}"], cwd=download, text=True,
                             capture_output=True)
        tarball = download / f"apache2_{plain}.debian.tar.xz"
        if got.returncode != 0 or not tarball.exists():
            print(f"apache2 {version}: no source from apt ({got.stderr.strip()[-200:]}); "
                  "trying the next version", flush=True)
            continue
        unpacked.mkdir(parents=True, exist_ok=True)
        run(["tar", "-xJf", str(tarball), "-C", str(unpacked), "debian/perl-framework"])
        shutil.rmtree(download)
        return unpacked / "debian/perl-framework", version
    sys.exit("make peer: apt-get source apache2 failed for every version; .ci/deps adds the "
             "deb-src lines it needs")


def build_module():
    cargo = os.environ.get("CARGO", "cargo")
    run([cargo, "build", "--release", "--lib", "--quiet"], cwd=REPO)
    return REPO / "target/release/libmod_prison.so"


# ---- what a run leaves behind: only its own objects (other httpds may run meanwhile) ----

def processes_of(root):
    """Every process whose command line or working directory is under `root`."""
    found = []
    for pid in pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if str(root) in cmd or cwd.startswith(str(root)):
            found.append(pid)
    return found


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    return None


class Witness:
    """Watches one run from outside: the namespaces its processes hold (other than the
    driver's own) and the BPF programs attached to its prison's cgroup2 directory, so that
    afterwards exactly those can be looked for."""

    # cgroup-BPF attach types PrisonIP uses: inet sock create, inet4/6 bind and connect,
    # udp4/6 sendmsg.
    ATTACH_TYPES = (2, 8, 9, 10, 11, 14, 15)

    def __init__(self, root, prison_name):
        self.root, self.prison_name = root, prison_name
        self.own = {os.readlink(f"/proc/self/ns/{k}") for k in self.kinds()}
        self.namespaces, self.bpf, self.cgroups = set(), set(), set()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.cgroup2 = cgroup2_root()

    @staticmethod
    def kinds():
        return ("mnt", "net", "ipc", "uts", "cgroup", "pid")

    def look(self):
        for pid in processes_of(self.root):
            for kind in self.kinds():
                try:
                    ns = os.readlink(f"/proc/{pid}/ns/{kind}")
                except OSError:
                    continue
                if ns not in self.own:
                    self.namespaces.add(ns)
            try:
                lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                path = line.split(":", 2)[2]
                if line.startswith("0::") and self.cgroup2 and "/prison-" in path:
                    self.cgroups.add(self.cgroup2 + path)
        for cgroup in self.cgroups:
            self.bpf |= self.attached(cgroup)

    def attached(self, cgroup):
        """Ids of the programs attached to `cgroup` (BPF_PROG_QUERY)."""
        try:
            fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return set()
        found = set()
        try:
            for attach_type in self.ATTACH_TYPES:
                ids = (ctypes.c_uint32 * 64)()
                attr = (ctypes.c_uint32 * 32)()
                attr[0], attr[1] = fd, attach_type
                ptr = ctypes.addressof(ids)
                attr[4], attr[5] = ptr & 0xFFFFFFFF, ptr >> 32
                attr[6] = len(ids)
                # SYS_bpf = 321 on x86_64, BPF_PROG_QUERY = 16
                if self.libc.syscall(321, 16, ctypes.byref(attr), ctypes.sizeof(attr)) == 0:
                    found |= {ids[i] for i in range(attr[6])}
        finally:
            os.close(fd)
        return found

    def bpf_programs(self):
        """Every BPF program id on the host (BPF_PROG_GET_NEXT_ID = 11)."""
        attr = (ctypes.c_uint32 * 32)()
        ids, current = set(), 0
        while True:
            attr[0], attr[1] = current, 0
            if self.libc.syscall(321, 11, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
                return ids
            current = attr[1]
            ids.add(current)

    def left(self):
        """What of this run is still there, by kind."""
        held = set()
        for pid in pids():
            for kind in self.kinds():
                try:
                    held.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
                except OSError:
                    pass
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if str(self.root) in line]
        cgroups = []
        for top, dirs, _ in os.walk("/sys/fs/cgroup"):
            cgroups += [os.path.join(top, d) for d in dirs
                        if d.startswith(f"prison-{self.prison_name}.")]
        return {"processes": processes_of(self.root), "mounts": mounts,
                "namespaces": sorted(self.namespaces & held), "prison cgroups": cgroups,
                "BPF programs": sorted(self.bpf & self.bpf_programs())}


# ---- one run ----

def httpd_conf(mpm, prison_module, path):
    """Debian's apache2.conf with every shipped module, as debian/tests/run-test-suite makes
    it (Apache::Test takes only LoadModule, TypesConfig and the like from it), and with the
    prison's module when `prison_module` is set."""
    jailed = prison_module is not None
    lines = [Path("/etc/apache2/apache2.conf").read_text(), (MODS / f"mpm_{mpm}.load").read_text()]
    for load in sorted(MODS.glob("*.load")):
        if load.name.startswith("mpm_") or load.name == "prison.load":
            continue
        if load.name == "suexec.load" and jailed:
            continue  # refused with PrisonSecurity ALL (README, Limitations); no test uses it
        if load.name.startswith("php"):
            if mpm != "prefork":
                continue  # mod_php is not thread safe: httpd refuses it under event
            lines.append(php_load(load, path.parent))
            continue
        lines.append(load.read_text())
    lines += [f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in TEST_MODULES]
    if jailed:
        # Here, not in prison.conf.in: Apache::Test knows the modules it finds in this file, and
        # info.t expects /server-info to list exactly those.
        lines.append(f"LoadModule prison_module {prison_module}")
    lines += [(MODS / "mime.conf").read_text(), "ServerName localhost"]
    text = "\n".join(lines)
    path.write_text(re.sub(r"^Include", "#Include", text, flags=re.M))


def php_load(load, work):
    """mod_php's LoadModule under a name this suite knows. Apache::Test names a module after
    its file (libphp8.2.so: mod_php8.2.c) and need_php, which every t/php test and the PHP
    security tests ask, knows only PHP 4 and 5 (php4, php5, sapi_apache2.c): so the same
    libphp8.2.so is loaded through a link called mod_php5.so."""
    m = re.search(r"^LoadModule\s+(\S+)\s+(\S+)", load.read_text(), re.M)
    link = work / "mod_php5.so"
    link.symlink_to(m.group(2))
    return f"LoadModule {m.group(1)} {link}"


def start_command(suite_dir):
    """The command Apache::Test would start httpd with (it will not, as root)."""
    perl = ("use Apache::TestConfig; my $c = Apache::TestConfig->thaw; $c->httpd_config; "
            "print $c->server->start_cmd")
    return run(["perl", "-IApache-Test/lib", "-e", perl], cwd=suite_dir).stdout.split()


class Result:
    def __init__(self, log):
        self.files = self.tests = 0
        self.failed = set()     # (file, subtest number)
        self.not_run = set()    # planned but never run
        self.dead = set()       # files that gave no plan at all (died before testing)
        self.skipped = {}       # whole files skipped, with the reason
        self.parse(log)

    def parse(self, log):
        current = numbers = None
        in_summary = False
        for line in log.splitlines():
            m = re.match(r"^(t/\S+\.t) \.+ ?skipped: (.*)$", line)
            if m:
                self.skipped[m.group(1)] = m.group(2)
            if line.startswith("Test Summary Report"):
                in_summary = True
                continue
            m = re.match(r"^Files=(\d+), Tests=(\d+)", line)
            if m:
                self.files, self.tests = int(m.group(1)), int(m.group(2))
                in_summary = False
            if not in_summary:
                continue
            m = re.match(r"^(t/\S+\.t)\s+\(Wstat: \d+ Tests: (\d+) Failed: \d+\)", line)
            if m:
                current, numbers = m.group(1), None
                if m.group(2) == "0":
                    self.dead.add(current)
                continue
            m = re.match(r"^\s+Failed tests?:\s+(.*)$", line)
            if m and current:
                numbers = m.group(1)
                self.failed |= {(current, n) for n in ranges(numbers)}
                continue
            if numbers is not None and re.match(r"^\s+[\d, -]+$", line) and current:
                self.failed |= {(current, n) for n in ranges(line)}  # a wrapped list
                continue
            numbers = None
            m = re.search(r"You planned (\d+) tests? but ran (\d+)", line)
            if m and current:
                planned, ran = int(m.group(1)), int(m.group(2))
                self.not_run |= {(current, n) for n in range(ran + 1, planned + 1)}
                if ran == 0:
                    self.dead.discard(current)

    def broken(self):
        return self.failed | self.not_run


def ranges(text):
    numbers = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        numbers += range(int(lo), int(hi or lo) + 1)
    return numbers


def one_run(mpm, jailed, source, module, top):
    mode = "prison" if jailed else "plain"
    work = top / f"{mpm}-{mode}"
    work.mkdir(mode=0o755)
    suite_dir = work / "perl-framework"
    shutil.copytree(source, suite_dir, symlinks=True)
    prison_name = f"peer-{mpm}-{os.getpid()}"
    prison_module = None
    if jailed:
        # The name `make install` gives it: Apache::Test names a module after its file
        # (mod_prison.so: mod_prison.c, the module's source name in /server-info).
        # A copy, not a link: the run's private /tmp hides a repository under /tmp.
        prison_module = work / "mod_prison.so"
        shutil.copy2(module, prison_module)
        prison = work / "prison"
        prison.mkdir(mode=0o755)
        conf = (HERE / "prison.conf.in").read_text()
        for key, value in (("prison_dir", prison), ("prison_name", prison_name)):
            conf = conf.replace("{" + key + "}", str(value))
        (suite_dir / "t/conf/prison.conf.in").write_text(conf)
    conf = work / "apache2.conf"
    httpd_conf(mpm, prison_module, conf)
    # As Debian's autopkgtest: Makefile.PL, then t/TEST -configure (builds the c-modules).
    run(["perl", "Makefile.PL", "-apxs", "/usr/bin/apxs2", "-httpd_conf", str(conf)],
        cwd=suite_dir)
    run(["perl", "t/TEST", "-configure"], cwd=suite_dir)
    start = start_command(suite_dir)
    witness = Witness(work, prison_name)
    t0 = time.monotonic()
    log_path = CACHE / f"{mpm}-{mode}.log"
    with open(log_path, "w") as log:
        inside = subprocess.Popen(["unshare", "--net", "--mount", "--", str(HERE / "inside.sh"),
                                   str(suite_dir), *start],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=suite_dir)
        while inside.poll() is None:
            witness.look()
            time.sleep(1)
    seconds = time.monotonic() - t0
    time.sleep(1)  # a last child's exit reaches its parent
    left = {k: v for k, v in witness.left().items() if v}
    result = Result(log_path.read_text())
    if inside.returncode != 0:
        left["inside.sh"] = [f"exit status {inside.returncode}; see {log_path}"]
    if result.files == 0:
        left["the suite"] = [f"no summary line; see {log_path}"]
    return result, seconds, left


def self_test(top):
    """The leftover check sees a process and a network namespace a run leaves (and forgets
    them once gone), and the summary parser reads failed and unrun subtests."""
    probe = top / "self-test"
    probe.mkdir()
    witness = Witness(probe, "self-test")
    sleeper = subprocess.Popen(["unshare", "--net", "sleep", "60"], cwd=probe)
    try:
        deadline = time.monotonic() + 10
        while not witness.namespaces and time.monotonic() < deadline:
            time.sleep(0.05)
            witness.look()
        seen = witness.left()
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = witness.left()
    summary = Result("Test Summary Report\n-------------------\n"
                     "t/a.t (Wstat: 0 Tests: 4 Failed: 2)\n  Failed tests:  1, 3\n"
                     "  Parse errors: Bad plan.  You planned 6 tests but ran 4.\n"
                     "Files=1, Tests=4, 1 wallclock secs\n")
    wrong = []
    if not (seen["processes"] and seen["namespaces"]):
        wrong.append(f"a running unshare --net sleep was not seen: {seen}")
    if any(gone.values()):
        wrong.append(f"a finished one was still seen: {gone}")
    if summary.failed != {("t/a.t", 1), ("t/a.t", 3)} or \
            summary.not_run != {("t/a.t", 5), ("t/a.t", 6)}:
        wrong.append(f"summary parsed as {summary.failed}, {summary.not_run}")
    probe.rmdir()
    if wrong:
        sys.exit("peer.py self-test failed: " + "; ".join(wrong))


def main():
    if os.geteuid() != 0:
        sys.exit("make peer must run as root")
    CACHE.mkdir(parents=True, exist_ok=True)
    source, version = suite()
    module = build_module()
    print(f"suite: debian/perl-framework of Debian's apache2 source {version}; "
          f"httpd {run(['apache2', '-v']).stdout.splitlines()[0]}", flush=True)
    # Not under /tmp: each run gets a /tmp of its own (inside.sh), which would hide it.
    top = Path(f"/var/tmp/mod_prison-peer.{os.getpid()}")
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(mode=0o755)
    self_test(top)
    problems = []
    try:
        for mpm in os.environ.get("PEER_MPMS", "prefork event").split():
            # Plain and prison side by side, each in its own network namespace (the same
            # ports), so that both see the same load on a shared machine.
            with ThreadPoolExecutor(2) as pool:
                runs = {mode: pool.submit(one_run, mpm, mode == "prison", source, module, top)
                        for mode in ("plain", "prison")}
            results = {}
            for mode, future in runs.items():
                result, seconds, left = future.result()
                results[mode] = result
                print(f"{mpm} {mode:6}: {result.files} files, {result.tests} subtests, "
                      f"{len(result.failed)} failed, {len(result.not_run)} planned but not run, "
                      f"{len(result.dead)} files died, {len(result.skipped)} files skipped "
                      f"({seconds:.0f} s)", flush=True)
                for what, items in left.items():
                    problems.append(f"{mpm} {mode}: left behind: {what}: {items[:10]}")
            plain, prison = results["plain"], results["prison"]
            only = sorted(prison.broken() - plain.broken())
            dead = sorted(prison.dead - plain.dead)
            skipped = sorted(set(prison.skipped) - set(plain.skipped))
            print(f"{mpm}: failing only with the prison: {len(only)} subtests, {len(dead)} "
                  f"files died, {len(skipped)} files skipped", flush=True)
            for file, n in only:
                how = "not run" if (file, n) in prison.not_run else "failed"
                print(f"  {file} {n} ({how})", flush=True)
            for file in dead:
                print(f"  {file} (died)", flush=True)
            for file in skipped:
                print(f"  {file} (skipped: {prison.skipped[file]})", flush=True)
            fixed = sorted(plain.broken() - prison.broken())
            if fixed:
                print(f"  (failing only without the prison: {len(fixed)}: "
                      f"{', '.join(f'{f} {n}' for f, n in fixed[:20])})", flush=True)
            if only or dead or skipped:
                problems.append(f"{mpm}: {len(only) + len(dead) + len(skipped)} failures only "
                                "with the prison")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    for p in problems:
        print("FAIL:", p, flush=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
