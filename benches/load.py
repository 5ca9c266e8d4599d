#!/usr/bin/env python3
"""Side-by-side load benchmark: direct, switchback, nginx, HAProxy and plain Pingora, and
switchback and nginx terminating TLS with the same certificate.

Every contender runs with one worker thread, upstream keep-alive on, access logs off, the
same 90/10 split over one shared fast upstream (nginx on two ports). Contenders are
interleaved over rounds, the order rotated each round (A B C D E F, B C D E F A, ...), and medians are reported, each also as a
ratio to nginx measured in the same run.

    make bench-load                 # full run (release build), under 10 minutes
    BENCH_QUICK=1 make bench-load   # smoke: debug build, a few seconds per contender

Writes target/bench-load.json. Only loopback is ever targeted; every load is bounded in time.
"""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "4"))
IDLE_CONNS = 1000 if QUICK else 10_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
TICKS = os.sysconf("SC_CLK_TCK")


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def ensure_tools():
    missing = [t for t in ("nginx", "haproxy", "wrk", "openssl") if not shutil.which(t)]
    if missing:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            say(f"installing {' '.join(missing)}")
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
        else:
            sys.exit(f"missing {' '.join(missing)}; run: sudo apt-get install -y {' '.join(missing)}")
    # nginx and the stock service may hold port 80; we never use it, but stop a stray master.
    subprocess.run(["pkill", "-f", "nginx: master process nginx -g"], stderr=subprocess.DEVNULL)


def build():
    profile = [] if QUICK else ["--release"]
    subprocess.run(["cargo", "build", "--quiet", *profile, "--bin", "switchback", "--example", "plain_pingora",
                    "--example", "open_loop"], cwd=ROOT, check=True)
    d = os.path.join(TARGET, "debug" if QUICK else "release")
    global OPEN_LOOP
    OPEN_LOOP = os.path.join(d, "examples", "open_loop")
    return os.path.join(d, "switchback"), os.path.join(d, "examples", "plain_pingora")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def procs(pid):
    """pid and all its descendants."""
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(p))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    total = 0
    for p in procs(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICKS


def rss_kib(pid, key="VmRSS"):
    total = 0
    for p in procs(pid):
        try:
            m = re.search(rf"{key}:\s+(\d+) kB", open(f"/proc/{p}/status").read())
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


class Run:
    """The work directory, the shared upstream, and the contenders' start recipes."""

    def __init__(self, switchback, plain):
        self.dir = tempfile.mkdtemp(prefix="switchback-bench-")
        self.switchback, self.plain = switchback, plain
        self.blue, self.green = free_port(), free_port()
        self.upstream = self.nginx("upstream", f"""
            server {{ listen 127.0.0.1:{self.blue}; location / {{ return 200 "ok\\n"; }} }}
            server {{ listen 127.0.0.1:{self.green}; location / {{ return 200 "ok\\n"; }} }}""")
        wait_http(self.blue)
        wait_http(self.green)
        # One ECDSA P-256 certificate for both TLS contenders.
        self.cert, self.key = os.path.join(self.dir, "bench.pem"), os.path.join(self.dir, "bench.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=bench.test",
                        "-addext", "subjectAltName=DNS:bench.test"], check=True, capture_output=True)

    def nginx(self, name, servers, workers=1):
        prefix = os.path.join(self.dir, name)
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        open(conf, "w").write(f"""
            worker_processes {workers}; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log warn;
            worker_rlimit_nofile 65536;
            events {{ worker_connections 20000; }}
            http {{ access_log off; keepalive_requests 100000; client_body_temp_path {prefix};
                    proxy_temp_path {prefix}; fastcgi_temp_path {prefix}; uwsgi_temp_path {prefix}; scgi_temp_path {prefix};
                    {servers} }}""")
        return subprocess.Popen(["nginx", "-p", prefix, "-c", conf], stderr=subprocess.DEVNULL)

    def start(self, name):
        port = free_port()
        if name == "direct":
            return None, self.blue
        if name.startswith("switchback"):
            self.admin = free_port()
            metrics = "false" if name == "switchback-nometrics" else "true"
            conf = os.path.join(self.dir, "switchback.toml")
            tls_port = free_port()
            tls = (f'[tls]\nlisten = ["127.0.0.1:{tls_port}"]\nalpn = ["http/1.1"]\n'
                   f'certificates = [{{ cert = "{self.cert}", key = "{self.key}" }}]\n') if name == "switchback-tls" else ""
            open(conf, "w").write(f"""[proxy]\nlisten = ["127.0.0.1:{port}"]\nthreads = 1\n
[admin]\nlisten = "127.0.0.1:{self.admin}"\n[log]\ndeployments = "deployments.jsonl"\n
[metrics]\nenabled = {metrics}\n{tls}
[pools.blue]\nbackends = ["127.0.0.1:{self.blue}"]\n[pools.green]\nbackends = ["127.0.0.1:{self.green}"]\n
[split]\nblue = 90\ngreen = 10\n""")
            p = subprocess.Popen([self.switchback, "serve", "--config", conf], stderr=subprocess.DEVNULL,
                                 env={**os.environ, "RUST_LOG": "warn"})
            if tls:
                wait_http(port)
                return p, tls_port
        elif name == "nginx-tls":
            plain = free_port()
            p = self.nginx(f"nginx-{port}", f"""
                upstream backend {{ server 127.0.0.1:{self.blue} weight=9; server 127.0.0.1:{self.green} weight=1; keepalive 64; }}
                server {{ listen 127.0.0.1:{port} ssl; listen 127.0.0.1:{plain};
                          ssl_certificate {self.cert}; ssl_certificate_key {self.key};
                          location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
            wait_http(plain)
            return p, port
        elif name == "nginx":
            p = self.nginx(f"nginx-{port}", f"""
                upstream backend {{ server 127.0.0.1:{self.blue} weight=9; server 127.0.0.1:{self.green} weight=1; keepalive 64; }}
                server {{ listen 127.0.0.1:{port};
                          location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        elif name == "haproxy":
            conf = os.path.join(self.dir, f"haproxy-{port}.cfg")
            open(conf, "w").write(f"""global\n  nbthread 1\n  maxconn 9000\n
defaults\n  mode http\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n  option http-keep-alive\n
frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n
backend be\n  balance roundrobin\n  server blue 127.0.0.1:{self.blue} weight 9\n  server green 127.0.0.1:{self.green} weight 1\n""")
            p = subprocess.Popen(["haproxy", "-f", conf], stderr=subprocess.DEVNULL)
        elif name == "pingora":
            p = subprocess.Popen([self.plain, f"127.0.0.1:{port}", f"127.0.0.1:{self.blue}",
                                  f"127.0.0.1:{self.green}", "1"], stderr=subprocess.DEVNULL)
        wait_http(port)
        return p, port

    def close(self):
        self.upstream.terminate()
        self.upstream.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(p):
    if p:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wrk(port, seconds, connections=64, scheme="http", headers=()):
    extra = [a for h in headers for a in ("-H", h)]
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra,
                          f"{scheme}://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad += sum(int(x) for x in m.groups()) if m else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": rps, "requests": requests, "failed": bad}


def open_loop(port, seconds, rate):
    """examples/open_loop.rs: fixed rate, 64 connections, latency from the intended send time."""
    out = subprocess.run([OPEN_LOOP, f"127.0.0.1:{port}", str(int(rate)), str(seconds), "64"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    pct = json.loads(out)
    return {"p50_ms": pct["p50"] * 1e3, "p99_ms": pct["p99"] * 1e3, "p999_ms": pct["p99.9"] * 1e3,
            "open_loop_errors": pct["errors"]}


def measure(run, name, rate):
    p, port = run.start(name)
    try:
        wrk(port, 1)  # warm-up: pools filled, caches hot
        cpu0 = cpu_seconds(p.pid) if p else 0
        closed = wrk(port, SECONDS)
        cpu = (cpu_seconds(p.pid) - cpu0) if p else 0
        result = {**closed, "cpu_us_per_req": 1e6 * cpu / max(closed["requests"], 1) if p else None}
        if rate:
            result.update(open_loop(port, SECONDS, rate))
            result["failed"] += result.pop("open_loop_errors")
        result["peak_rss_kib"] = rss_kib(p.pid, "VmHWM") if p else None
        return result
    finally:
        stop(p)


def tls_measure(run, name):
    """TLS termination: keep-alive HTTP/1.1 throughput, and new handshakes per second (a
    fresh connection, and a full handshake, for every request)."""
    p, port = run.start(name)
    try:
        wrk(port, 1, scheme="https")
        cpu0 = cpu_seconds(p.pid)
        keep = wrk(port, SECONDS, scheme="https")
        cpu = cpu_seconds(p.pid) - cpu0
        fresh = wrk(port, SECONDS, connections=16, scheme="https", headers=["Connection: close"])
        return {"keepalive_rps": keep["rps"], "keepalive_cpu_us_per_req": 1e6 * cpu / max(keep["requests"], 1),
                "handshake_rps": fresh["rps"], "failed": keep["failed"]}
    finally:
        stop(p)


def flip_scenario(run):
    """Throughput while the split flips 10 times a second through the admin API."""
    p, port = run.start("switchback")
    try:
        wrk(port, 1)
        steady = wrk(port, SECONDS)
        done, flips = threading.Event(), [0]

        def flipper():
            i = 0
            while not done.is_set():
                body = json.dumps({"blue": 90, "green": 10} if i % 2 else {"blue": 10, "green": 90}).encode()
                req = urllib.request.Request(f"http://127.0.0.1:{run.admin}/split", body, method="PUT",
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=5).read()
                flips[0] += 1
                i += 1
                done.wait(0.1)

        t = threading.Thread(target=flipper)
        t.start()
        flipping = wrk(port, SECONDS)
        done.set()
        t.join()
        return {"steady_rps": steady["rps"], "flipping_rps": flipping["rps"], "ratio": flipping["rps"] / steady["rps"],
                "flips": flips[0], "failed": flipping["failed"]}
    finally:
        stop(p)


def idle_scenario(run, name):
    """RSS of the proxy holding IDLE_CONNS idle keep-alive client connections."""
    p, port = run.start(name)
    socks = []
    try:
        base = rss_kib(p.pid)
        for _ in range(IDLE_CONNS):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            s.recv(4096)
        return {"connections": len(socks), "rss_kib": rss_kib(p.pid), "baseline_rss_kib": base}
    finally:
        for s in socks:
            s.close()
        stop(p)


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    ensure_tools()
    started = time.time()
    switchback, plain = build()
    run = Run(switchback, plain)
    contenders = ["direct", "switchback", "switchback-nometrics", "nginx", "haproxy", "pingora"]
    results = {c: [] for c in contenders}
    try:
        p, port = run.start("nginx")
        rate = 0.5 * wrk(port, 2)["rps"]  # open-loop rate: about half of nginx's maximum
        stop(p)
        for r in range(ROUNDS):
            # Rotate the order each round: on this shared VM a contender's position (right
            # after the flat-out `direct` run, say) moved its figure by up to 20 %.
            for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
                say(f"round {r + 1}/{ROUNDS}: {c}")
                results[c].append(measure(run, c, rate))
        tls = {c: [] for c in ("switchback-tls", "nginx-tls")}
        for r in range(ROUNDS):
            for c in (list(tls) if r % 2 == 0 else list(reversed(list(tls)))):
                say(f"TLS round {r + 1}/{ROUNDS}: {c}")
                tls[c].append(tls_measure(run, c))
        say("scenario: split flipping 10/s")
        flip = flip_scenario(run)
        say(f"scenario: {IDLE_CONNS} idle keep-alive connections")
        idle = {c: idle_scenario(run, c) for c in ("switchback", "nginx")}
    finally:
        run.close()
    report(results, rate, flip, idle, tls, time.time() - started)


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report(results, rate, flip, idle, tls, elapsed):
    keys = ["rps", "cpu_us_per_req", "p50_ms", "p99_ms", "p999_ms", "peak_rss_kib", "failed"]
    table = {c: {k: median(rows, k) for k in keys} for c, rows in results.items()}
    ref = table["nginx"]
    print(f"\nload benchmark: {ROUNDS} round(s) x {SECONDS}s, wrk -t1 -c64 closed loop, open loop (examples/open_loop.rs) at {rate:.0f} req/s"
          f"{' (QUICK: debug build, figures meaningless)' if QUICK else ''}")
    print(f"{'contender':<21} {'req/s':>9} {'x nginx':>7} {'cpu us/req':>10} {'x nginx':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'peak RSS MiB':>12} {'failed':>6}")
    fmt = lambda v, f: (f.format(v) if v is not None else "-")
    for c, row in table.items():
        ratio = lambda k: fmt(row[k] / ref[k] if row[k] is not None and ref[k] else None, "{:.2f}")
        print(f"{c:<21} {fmt(row['rps'], '{:.0f}'):>9} {ratio('rps'):>7} {fmt(row['cpu_us_per_req'], '{:.1f}'):>10} {ratio('cpu_us_per_req'):>7}"
              f" {fmt(row['p50_ms'], '{:.2f}'):>7} {fmt(row['p99_ms'], '{:.2f}'):>7} {fmt(row['p999_ms'], '{:.2f}'):>8}"
              f" {fmt(row['peak_rss_kib'] and row['peak_rss_kib'] / 1024, '{:.1f}'):>12} {fmt(row['failed'], '{:.0f}'):>6}")
    sb, pg, hp = table["switchback"], table["pingora"], table["haproxy"]
    nm = table["switchback-nometrics"]
    print(f"\nswitchback / plain pingora throughput: {sb['rps'] / pg['rps']:.3f}   switchback / haproxy: {sb['rps'] / hp['rps']:.3f}"
          f"   metrics on / off: {sb['rps'] / nm['rps']:.3f}")
    print(f"split flipping 10/s: {flip['flipping_rps']:.0f} vs {flip['steady_rps']:.0f} req/s steady = {flip['ratio']:.3f}, "
          f"{flip['flips']} flips, {flip['failed']} failed requests")
    s, n = idle["switchback"], idle["nginx"]
    print(f"{s['connections']} idle keep-alive connections: switchback {s['rss_kib'] / 1024:.1f} MiB, nginx {n['rss_kib'] / 1024:.1f} MiB"
          f" = {s['rss_kib'] / n['rss_kib']:.2f}x")
    tls_table = {c: {k: median(rows, k) for k in ("keepalive_rps", "keepalive_cpu_us_per_req", "handshake_rps", "failed")}
                 for c, rows in tls.items()}
    st, nt = tls_table["switchback-tls"], tls_table["nginx-tls"]
    print(f"TLS (same ECDSA P-256 certificate, TLS 1.3, 1 worker): keep-alive switchback {st['keepalive_rps']:.0f} vs nginx "
          f"{nt['keepalive_rps']:.0f} req/s = {st['keepalive_rps'] / nt['keepalive_rps']:.2f}x; new handshakes "
          f"(Connection: close, 16 clients) switchback {st['handshake_rps']:.0f} vs nginx {nt['handshake_rps']:.0f}/s"
          f" = {st['handshake_rps'] / nt['handshake_rps']:.2f}x")
    print(f"total time {elapsed:.0f}s")
    os.makedirs(TARGET, exist_ok=True)
    out = os.path.join(TARGET, "bench-load.json")
    json.dump({"quick": QUICK, "rounds": ROUNDS, "seconds": SECONDS, "open_loop_rate": rate, "medians": table,
               "raw": results, "flip": flip, "idle": idle, "tls": tls_table, "tls_raw": tls,
               "date": time.strftime("%Y-%m-%d")}, open(out, "w"), indent=1)
    print(f"written {out}")
    failed = sum((row["failed"] or 0) for row in table.values()) + flip["failed"]
    failed += sum((row["failed"] or 0) for row in tls_table.values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
