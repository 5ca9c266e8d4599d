#!/usr/bin/env python3
"""Control-plane latency: how fast a change is live.

    python3 benches/control_latency.py [switches] [rewrites]     (make bench-control)

1. `POST /switch` round trip over one keep-alive admin connection, alternating blue/green,
   `switches` times (default 1000): the client's view of "validated, persisted, swapped,
   logged, answered".
2. File-write-to-live: the config file is rewritten `rewrites` times (default 100) by atomic
   rename, alternating the split; the time from the rename until `GET /status` shows the new
   version (polled every millisecond) includes the watcher's debounce (`[reload] debounce`,
   100 ms by default, set lower here with DEBOUNCE=).

Release build; upstreams are two tiny local TCP listeners that are never sent a request.
Loopback only; every loop is bounded in count.
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWITCHES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REWRITES = int(sys.argv[2]) if len(sys.argv) > 2 else 100
DEBOUNCE = os.environ.get("DEBOUNCE", "100ms")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def config(proxy, admin, blue, green, split):
    return (
        f'[proxy]\nlisten = ["127.0.0.1:{proxy}"]\nthreads = 1\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\n[reload]\ndebounce = "{DEBOUNCE}"\n'
        f'[pools.blue]\nbackends = ["127.0.0.1:{blue}"]\n'
        f'[pools.green]\nbackends = ["127.0.0.1:{green}"]\n[split]\n{split}\n'
    )


def main():
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "switchback"], cwd=ROOT, check=True
    )
    binary = os.path.join(ROOT, "target", "release", "switchback")
    upstreams = [socket.socket() for _ in range(2)]
    for s in upstreams:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
    blue, green = (s.getsockname()[1] for s in upstreams)
    proxy, admin = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="switchback-latency-")
    path = os.path.join(work, "switchback.toml")
    with open(path, "w") as f:
        f.write(config(proxy, admin, blue, green, "blue = 100"))
    log = open(os.path.join(work, "stderr.log"), "w")
    child = subprocess.Popen([binary, "serve", "--config", path], stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("switchback did not start; see " + log.name)
                time.sleep(0.02)

        def status():
            conn.request("GET", "/status")
            return json.loads(conn.getresponse().read())

        switch_ms = []
        for i in range(SWITCHES):
            body = json.dumps({"to": "green" if i % 2 == 0 else "blue"})
            start = time.perf_counter()
            conn.request("POST", "/switch", body, {"content-type": "application/json"})
            reply = conn.getresponse()
            reply.read()
            switch_ms.append((time.perf_counter() - start) * 1e3)
            assert reply.status == 200, reply.status

        live_ms = []
        for i in range(REWRITES):
            before = status()["version"]
            split = "blue = 90\ngreen = 10" if i % 2 == 0 else "blue = 10\ngreen = 90"
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(config(proxy, admin, blue, green, split))
                f.flush()
                os.fsync(f.fileno())
            start = time.perf_counter()
            os.rename(tmp, path)
            for _ in range(5000):
                if status()["version"] > before:
                    break
                time.sleep(0.001)
            else:
                sys.exit(f"rewrite {i} was not live within 5 s")
            live_ms.append((time.perf_counter() - start) * 1e3)

        print(f"POST /switch round trip, {SWITCHES} calls: p50 {pct(switch_ms, 50):.2f} ms, "
              f"p99 {pct(switch_ms, 99):.2f} ms, max {max(switch_ms):.2f} ms")
        print(f"file write to live, {REWRITES} atomic renames, debounce {DEBOUNCE}: "
              f"p50 {pct(live_ms, 50):.1f} ms, p99 {pct(live_ms, 99):.1f} ms, "
              f"max {max(live_ms):.1f} ms (mean {statistics.mean(live_ms):.1f})")
    finally:
        child.terminate()
        child.wait(timeout=35)
        for s in upstreams:
            s.close()


if __name__ == "__main__":
    main()
