"""Helpers of the load benchmark (benches/load.py): tools, processes, the contenders' start
recipes, and the load generators (wrk for closed loops, examples/open_loop.rs for open ones).

Only loopback is ever targeted; every load is bounded in time.
"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request

QUICK = os.environ.get("BENCH_QUICK") == "1"
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
    """Builds switchback and the examples; returns the directory holding them."""
    profile = [] if QUICK else ["--release"]
    subprocess.run(["cargo", "build", "--quiet", *profile, "--bin", "switchback", "--example", "plain_pingora", "--example", "lean_pingora",
                    "--example", "hello_pingora", "--example", "open_loop"], cwd=ROOT, check=True)
    return os.path.join(TARGET, "debug" if QUICK else "release")


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
    """(user, system) CPU seconds of pid and its descendants."""
    user = system = 0
    for p in procs(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user / TICKS, system / TICKS


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

    def __init__(self, bin_dir):
        self.dir = tempfile.mkdtemp(prefix="switchback-bench-")
        self.switchback = os.path.join(bin_dir, "switchback")
        self.plain = os.path.join(bin_dir, "examples", "plain_pingora")
        self.hello = os.path.join(bin_dir, "examples", "hello_pingora")
        self.lean = os.path.join(bin_dir, "examples", "lean_pingora")
        self.open_loop = os.path.join(bin_dir, "examples", "open_loop")
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
        """Starts contender `name`; returns (process, port). `-2t` (switchback) and `-2w`
        (nginx) run two workers; `pingora+<levers>` is plain Pingora with PLAIN_LEVERS set; `lean+guard` is
        the lean loop behind switchback's framing guard."""
        port = free_port()
        proxy_to = ('upstream backend { server 127.0.0.1:%d weight=9; server 127.0.0.1:%d weight=1; keepalive 64; }'
                    % (self.blue, self.green))
        location = 'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'
        if name == "direct":
            return None, self.blue
        if name.startswith("switchback"):
            self.admin = free_port()
            metrics = "false" if name == "switchback-nometrics" else "true"
            threads = 2 if name == "switchback-2t" else 1
            conf = os.path.join(self.dir, "switchback.toml")
            tls_port = free_port()
            tls = (f'[tls]\nlisten = ["127.0.0.1:{tls_port}"]\nalpn = ["http/1.1"]\n'
                   f'certificates = [{{ cert = "{self.cert}", key = "{self.key}" }}]\n') if name == "switchback-tls" else ""
            open(conf, "w").write(f"""[proxy]\nlisten = ["127.0.0.1:{port}"]\nthreads = {threads}\n
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
            p = self.nginx(f"nginx-{port}", f"""{proxy_to}
                server {{ listen 127.0.0.1:{port} ssl; listen 127.0.0.1:{plain};
                          ssl_certificate {self.cert}; ssl_certificate_key {self.key}; {location} }}""")
            wait_http(plain)
            return p, port
        elif name in ("nginx", "nginx-2w"):
            p = self.nginx(f"nginx-{port}", f"{proxy_to} server {{ listen 127.0.0.1:{port}; {location} }}",
                           workers=2 if name == "nginx-2w" else 1)
        elif name == "nginx-hello":
            p = self.nginx(f"nginx-{port}", f'server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}')
        elif name == "hello":
            p = subprocess.Popen([self.hello, f"127.0.0.1:{port}", "1"], stderr=subprocess.DEVNULL)
        elif name == "haproxy":
            conf = os.path.join(self.dir, f"haproxy-{port}.cfg")
            open(conf, "w").write(f"""global\n  nbthread 1\n  maxconn {haproxy_maxconn()}\n
defaults\n  mode http\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n  option http-keep-alive\n
frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n
backend be\n  balance roundrobin\n  server blue 127.0.0.1:{self.blue} weight 9\n  server green 127.0.0.1:{self.green} weight 1\n""")
            p = subprocess.Popen(["haproxy", "-f", conf], stderr=subprocess.DEVNULL)
        elif name in ("lean", "lean+guard"):
            p = subprocess.Popen([self.lean, f"127.0.0.1:{port}", f"127.0.0.1:{self.blue}", f"127.0.0.1:{self.green}",
                                  "1"], stderr=subprocess.DEVNULL,
                                 env={**os.environ, "LEAN_GUARD": "1" if name == "lean+guard" else "0"})
        elif name.startswith("pingora"):
            levers = name.partition("+")[2].replace("+", ",")
            p = subprocess.Popen([self.plain, f"127.0.0.1:{port}", f"127.0.0.1:{self.blue}",
                                  f"127.0.0.1:{self.green}", "1"], stderr=subprocess.DEVNULL,
                                 env={**os.environ, "PLAIN_LEVERS": levers})
        else:
            raise ValueError(f"no contender {name}")
        wait_http(port)
        return p, port

    def close(self):
        self.upstream.terminate()
        self.upstream.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def haproxy_maxconn():
    """HAProxy refuses to start unless 2 x maxconn descriptors fit under the limit."""
    import resource
    return min(20000, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200) // 2)


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


def open_loop(binary, port, seconds, rate):
    """examples/open_loop.rs: fixed rate, 64 connections, latency from the intended send time."""
    out = subprocess.run([binary, f"127.0.0.1:{port}", str(int(rate)), str(seconds), "64"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    pct = json.loads(out)
    return {"p50_ms": pct["p50"] * 1e3, "p99_ms": pct["p99"] * 1e3, "p999_ms": pct["p99.9"] * 1e3,
            "open_loop_errors": pct["errors"]}


