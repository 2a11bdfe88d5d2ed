#!/usr/bin/env bash
# make demo: a real, jailed httpd on 127.0.0.1 with conf/httpd-example.conf, then what a
# request sees from inside the prison and what the children look like from outside.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "make demo must run as root: httpd starts as root and jails its children" >&2; exit 1; }
module=$repo/target/release/libmod_prison.so
[ -f "$module" ] || { echo "missing $module: run make first" >&2; exit 1; }

echo "== building the probe (a static binary run as a CGI inside the prison)"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$repo/target/probe" \
    cargo build -q --release --manifest-path "$repo/tests/probe/Cargo.toml" --target x86_64-unknown-linux-gnu
probe=$repo/target/probe/x86_64-unknown-linux-gnu/release/prison-probe

root=$(mktemp -d /tmp/mod_prison-demo.XXXXXX)
chmod 755 "$root"
prison=$root/prison
conf=$root/httpd.conf
stop() {
    if [ -f "$root/httpd.pid" ]; then
        apache2 -T -f "$conf" -k stop 2>/dev/null || true
        for _ in $(seq 50); do [ -f "$root/httpd.pid" ] || break; sleep 0.1; done
    fi
    rm -rf "$root"
}
[ -n "${KEEP:-}" ] || trap stop EXIT

mkdir -p "$prison/www" "$prison/cgi-bin" "$root/run"
echo "<h1>Hello from inside the prison</h1>" > "$prison/www/index.html"
install -m 755 "$probe" "$prison/cgi-bin/probe"
echo "a secret on the host" > "$root/host-secret.txt"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#@ROOT@#$root#g" -e "s#@PRISON@#$prison#g" -e "s#@MODULE@#$module#g" \
    -e "s#@LIBEXEC@#$(apxs -q LIBEXECDIR)#g" -e "s#@PORT@#$port#g" "$repo/conf/httpd-example.conf" > "$conf"

echo "== apache2 -t (configuration check)"
apache2 -T -t -f "$conf"
echo "== starting httpd on 127.0.0.1:$port with PrisonDir $prison"
apache2 -T -f "$conf" -k start
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

echo "== GET / (DocumentRoot /www, as seen inside the prison)"
curl -s "http://127.0.0.1:$port/"
echo "== GET /cgi-bin/probe: what a script inside the prison sees"
curl -s "http://127.0.0.1:$port/cgi-bin/probe?read=$root/host-secret.txt&read=/etc/hosts&connect=127.0.0.1:$port&resolve=localhost" \
    | python3 -m json.tool
echo "== the same probe run directly on the host (no prison), for comparison"
"$probe" "read=$root/host-secret.txt" "connect=127.0.0.1:$port" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({k: d[k] for k in ("uid","hostname","root_entries","read","connect") if k in d}, indent=1)[:1500])'
echo "== httpd's processes, from outside (/proc)"
master=$(cat "$root/httpd.pid")
printf '%-8s %-9s %-5s %-22s %-22s %s\n' pid role uid "mount ns" "net ns" root
for pid in $master $(pgrep -P "$master"); do
    role=child; [ "$pid" = "$master" ] && role=parent
    uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
    same=$([ "$(stat -Lc %d:%i "/proc/$pid/root/")" = "$(stat -c %d:%i "$prison")" ] && echo PrisonDir || echo host)
    printf '%-8s %-9s %-5s %-22s %-22s %s\n' "$pid" "$role" "$uid" "$(readlink /proc/$pid/ns/mnt)" "$(readlink /proc/$pid/ns/net)" "$same"
done
echo "== error log (mod_prison lines)"
grep -F '[prison:' "$root/error.log" | tail -n 6
echo "== stopping; nothing of the prison remains"
