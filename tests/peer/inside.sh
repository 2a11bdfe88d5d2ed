#!/usr/bin/env bash
# One run of Apache's test suite, inside the network and mount namespaces peer.py made for it:
# only lo (the suite listens on 0.0.0.0 and mod_heartbeat multicasts, none of which may reach
# the host) and a /tmp of its own.
# usage: inside.sh <perl-framework dir> <httpd start command...>
set -uo pipefail
suite=$1
shift
cd "$suite" || exit 1
pidfile=t/logs/httpd.pid
ip link set lo up
# The suite's backends use fixed unix socket paths in /tmp (proxy.t's /tmp/test-ptf.sock): a
# private /tmp in this run's mount namespace (unshare --mount) keeps two runs side by side
# from taking each other's sockets.
mount -t tmpfs -o mode=1777,nosuid,nodev peer-tmp /tmp || exit 1
# httpd starts as root (the prison needs it; children run as User nobody)...
if ! "$@"; then
    echo "inside.sh: httpd did not start" >&2
    exit 1
fi
for _ in $(seq 300); do
    [ -s "$pidfile" ] && break
    sleep 0.1
done
master=$(cat "$pidfile") || exit 1
# ...and the client as nobody: Apache::Test refuses to run as root. It walks the whole tree
# (looking for core files), including what httpd just made root-only (mod_md's t/md).
chown -R nobody:nogroup "$suite"
# A test's helper that waits forever (proxy.t's UDS server when nothing connects) keeps the
# harness waiting: give the client PEER_TIMEOUT seconds, then kill its process group.
timeout --kill-after=10 "${PEER_TIMEOUT:-3600}" \
    /usr/sbin/runuser -u nobody -- env -i PATH=/usr/bin:/bin HOME="$suite" LANG=C \
    perl t/TEST -run-tests
client=$?
[ "$client" = 124 ] && echo "inside.sh: the suite did not finish in ${PEER_TIMEOUT:-3600} s" >&2
kill -TERM "$master"
for _ in $(seq 600); do
    kill -0 "$master" 2>/dev/null || exit $((client == 124))
    sleep 0.1
done
echo "inside.sh: httpd $master still running 60 s after SIGTERM; killing it" >&2
kill -KILL "$master"
exit 1
