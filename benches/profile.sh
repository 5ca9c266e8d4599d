#!/usr/bin/env bash
# Profiles switchback's request path with callgrind (instruction counts: repeatable on a
# noisy machine; `perf` has no hardware counters on this kind of VM).
#   benches/profile.sh [requests] [switchback|plain]   writes target/callgrind-<which>.out
# "plain" profiles examples/plain_pingora.rs the same way: the baseline for our features' cost.
# "lean" profiles examples/lean_pingora.rs (HTTP/1 on Pingora's parts without `ProxyHttp`).
# PROFILE_METRICS=false profiles switchback with [metrics] enabled = false.
# PROFILE_AFFINITY=1 adds [affinity] key = ["header:x-user-id"]; requests then carry 1,000
# distinct x-user-id values (PROFILE_KEYED=1 sends them without affinity: the reference).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-5000}
which=${2:-switchback}
out=${PROFILE_OUT:-target/callgrind-$which.out}
for tool in valgrind nginx wrk; do
  command -v $tool >/dev/null || { echo "missing $tool: sudo apt-get install -y $tool" >&2; exit 1; }
done
cargo build --profile profiling --quiet --bin switchback --example plain_pingora --example lean_pingora
dir=$(mktemp -d)
trap 'kill $(cat "$dir/nginx.pid" 2>/dev/null) 2>/dev/null; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
blue=$(port); green=$(port); proxy=$(port); admin=$(port)
cat > "$dir/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $dir/nginx.pid; error_log $dir/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
       uwsgi_temp_path $dir; scgi_temp_path $dir;
       server { listen 127.0.0.1:$blue; location / { return 200 "ok\n"; } }
       server { listen 127.0.0.1:$green; location / { return 200 "ok\n"; } } }
CONF
nginx -p "$dir" -c "$dir/nginx.conf"
cat > "$dir/switchback.toml" <<CONF
[proxy]
listen = ["127.0.0.1:$proxy"]
threads = 1
[admin]
listen = "127.0.0.1:$admin"
[pools.blue]
backends = ["127.0.0.1:$blue"]
[pools.green]
backends = ["127.0.0.1:$green"]
[metrics]
enabled = ${PROFILE_METRICS:-true}
$( [ "${PROFILE_AFFINITY:-0}" = 1 ] && printf '[affinity]\nkey = ["header:x-user-id"]\n' || true )
[split]
blue = 90
green = 10
CONF
if [ "$which" = plain ] || [ "$which" = lean ]; then
  cmd=(target/profiling/examples/${which}_pingora "127.0.0.1:$proxy" "127.0.0.1:$blue" "127.0.0.1:$green" 1)
else
  cmd=(target/profiling/switchback serve --config "$dir/switchback.toml")
fi
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" 2>"$dir/valgrind.log" &
sb=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$proxy/" >/dev/null && break; sleep 0.2; done
# A fixed number of requests: wrk with 4 connections until the count is reached (bounded).
python3 - "$proxy" "$requests" "${PROFILE_KEYED:-${PROFILE_AFFINITY:-0}}" <<'PY'
import socket, sys
port, n, sticky = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
s = socket.create_connection(("127.0.0.1", port))
plain = b"GET / HTTP/1.1\r\nHost: profile\r\n\r\n"
keyed = [b"GET / HTTP/1.1\r\nHost: profile\r\nx-user-id: user-%04d\r\n\r\n" % i for i in range(1000)]
buf = b""
for i in range(n):
    s.sendall(keyed[i % 1000] if sticky else plain)
    while b"ok\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    buf = buf[buf.index(b"ok\n") + 3:]
PY
kill -INT $sb; wait $sb || true
echo "== $requests requests; total instructions and per request"
callgrind_annotate "$out" 2>/dev/null | grep -m1 "PROGRAM TOTALS" || true
echo "== top functions by exclusive cost"
callgrind_annotate "$out" 2>/dev/null | sed -n '/file:function/,$p' | head -30
echo "== inclusive (what each phase costs, callees included)"
callgrind_annotate --inclusive=yes "$out" 2>/dev/null | sed -n '/file:function/,$p' | grep -E "switchback|pingora_proxy|ProxyHttp|proxy_to_h1|h1" | head -30
