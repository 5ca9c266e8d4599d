#!/usr/bin/env python3
"""Shared state on etcd (issue 26): how fast a change reaches every replica, how fast the
rollout engine fails over, and how often each replica writes to etcd during a rollout.

    python3 benches/shared_latency.py [writes]        (part of make bench-control)

A real 3-member etcd cluster (Debian's etcd-server) and three switchback replicas (release
build) on loopback.
1. `PUT /split` through replica a, `writes` times (default 1000), alternating: the write's
   round trip, and the time from its 200 until replicas b and c both show the new version
   (each polled over its own keep-alive connection, as fast as it answers).
2. A rollout runs for 10 s: etcd's put and txn counters before and after, per replica per
   second.
3. The rollout leader is killed (SIGKILL): the time until another replica leads, as
   `GET /replicas` on a survivor shows it; then the new leader is stopped with SIGTERM (its
   lease is revoked at exit) and timed the same way.
Loopback only; every loop is bounded in count and time.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from load_lib import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
PLAN = """
[plans.slow]
steps = [{ weight = 10, hold = "10m", min-requests = 1000000 }, { weight = 100 }]
"""


def pct(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wait_for(what, check, within=20):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.01)
    sys.exit(f"{what} did not happen within {within} s")


def start_etcd(work):
    names = ["e0", "e1", "e2"]
    peers = {n: free_port() for n in names}
    clients = {n: free_port() for n in names}
    cluster = ",".join(f"{n}=http://127.0.0.1:{peers[n]}" for n in names)
    procs = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    for n in names:
        procs.append(subprocess.Popen([
            "etcd", "--name", n, "--data-dir", os.path.join(work, n),
            "--listen-peer-urls", f"http://127.0.0.1:{peers[n]}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[n]}",
            "--listen-client-urls", f"http://127.0.0.1:{clients[n]}",
            "--advertise-client-urls", f"http://127.0.0.1:{clients[n]}",
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"bench-{os.getpid()}",
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error",
        ], stderr=subprocess.DEVNULL, env=env))
    endpoints = [f"http://127.0.0.1:{clients[n]}" for n in names]

    def healthy():
        with urllib.request.urlopen(endpoints[0] + "/health", timeout=1) as r:
            return json.loads(r.read()).get("health") == "true"

    wait_for("etcd", healthy)
    return procs, endpoints


def etcd_writes(endpoints):
    """etcd's cumulative put and txn counts (member 0's view of the whole cluster's writes)."""
    with urllib.request.urlopen(endpoints[0] + "/metrics", timeout=2) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("etcd_mvcc_put_total ", "etcd_mvcc_txn_total ")):
            total += float(line.split()[1])
    return total


def start_replica(binary, work, name, endpoints, blue, green):
    proxy, admin = free_port(), free_port()
    path = os.path.join(work, name, "switchback.toml")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write(
            f'[proxy]\nlisten = ["127.0.0.1:{proxy}"]\nthreads = 1\n'
            f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
            f'[state]\netcd = {json.dumps(endpoints)}\netcd-prefix = "/bench"\n'
            f'replica = "{name}"\ndir = "state"\n{PLAN}\n'
            f'[pools.blue]\nbackends = ["127.0.0.1:{blue}"]\n'
            f'[pools.green]\nbackends = ["127.0.0.1:{green}"]\n[split]\nblue = 100\n'
        )
    log = open(os.path.join(work, name, "stderr.log"), "w")
    child = subprocess.Popen([binary, "serve", "--config", path], stderr=log)
    return {"name": name, "child": child, "admin": admin, "proxy": proxy}


def call(replica, method, path, body=None, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", replica["admin"], timeout=10)
    headers = {"content-type": "application/json"} if body is not None else {}
    conn.request(method, path, body, headers)
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read() or b"null")


def leader(replica):
    _, body = call(replica, "GET", "/replicas")
    return next((r["replica"] for r in body["replicas"] if r["leader"]), None)


def failover(replicas, victim, sig):
    """Seconds from signalling the leader until a survivor reports another leader."""
    survivor = next(r for r in replicas if r is not victim and r["child"].poll() is None)
    start = time.perf_counter()
    victim["child"].send_signal(sig)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            now = leader(survivor)
            if now is not None and now != victim["name"]:
                return time.perf_counter() - start, now
        except OSError:
            pass
        time.sleep(0.02)
    sys.exit("no failover within 30 s")


def main():
    if shutil.which("etcd") is None:
        sys.exit("etcd is required (make deps installs Debian's etcd-server)")
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "switchback"], cwd=ROOT, check=True
    )
    binary = os.path.join(ROOT, "target", "release", "switchback")
    work = tempfile.mkdtemp(prefix="switchback-shared-")
    upstreams = [socket.socket() for _ in range(2)]
    for s in upstreams:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
    blue, green = (s.getsockname()[1] for s in upstreams)
    etcd, endpoints = start_etcd(work)
    replicas = []
    try:
        for name in ["a", "b", "c"]:
            replicas.append(start_replica(binary, work, name, endpoints, blue, green))
        for r in replicas:
            wait_for(f"replica {r['name']}", lambda r=r: call(r, "GET", "/healthz")[0] == 200)
        a, others = replicas[0], replicas[1:]
        conn_a = http.client.HTTPConnection("127.0.0.1", a["admin"], timeout=10)
        polls = [http.client.HTTPConnection("127.0.0.1", r["admin"], timeout=10) for r in others]
        write_ms, applied_ms = [], []
        for i in range(WRITES):
            body = json.dumps({"blue": 90 - i % 2 * 80, "green": 10 + i % 2 * 80})
            start = time.perf_counter()
            status, reply = call(a, "PUT", "/split", body, conn_a)
            acked = time.perf_counter()
            assert status == 200, (status, reply)
            for r, conn in zip(others, polls):
                for _ in range(100000):
                    if call(r, "GET", "/status", conn=conn)[1]["version"] >= reply["version"]:
                        break
                else:
                    sys.exit(f"write {i} never reached replica {r['name']}")
            done = time.perf_counter()
            write_ms.append((acked - start) * 1e3)
            applied_ms.append((done - acked) * 1e3)
        print(f"PUT /split through one of 3 replicas, {WRITES} writes: round trip "
              f"p50 {pct(write_ms, 50):.2f} ms, p99 {pct(write_ms, 99):.2f} ms")
        print(f"  200 to every other replica applied: p50 {pct(applied_ms, 50):.2f} ms, "
              f"p99 {pct(applied_ms, 99):.2f} ms, max {max(applied_ms):.2f} ms")

        wait_for("a rollout leader", lambda: leader(a) is not None)
        call(a, "PUT", "/split", json.dumps({"blue": 100}))
        status, body = call(a, "POST", "/rollouts", json.dumps({"to": "green", "plan": "slow"}))
        assert status == 201, (status, body)
        before, t0 = etcd_writes(endpoints), time.monotonic()
        time.sleep(10)  # a fixed measuring window, not a wait for a condition
        rate = (etcd_writes(endpoints) - before) / (time.monotonic() - t0) / len(replicas)
        print(f"etcd writes (put + txn) during a rollout: {rate:.2f} per replica per second")

        first = leader(a)
        victim = next(r for r in replicas if r["name"] == first)
        took, now = failover(replicas, victim, signal.SIGKILL)
        print(f"rollout leader {first} SIGKILLed: {now} leads after {took:.2f} s (lease TTL 10 s)")
        victim = next(r for r in replicas if r["name"] == now)
        took, then = failover(replicas, victim, signal.SIGTERM)
        print(f"rollout leader {now} stopped (SIGTERM, lease revoked): {then} leads after {took:.2f} s")
    finally:
        for r in replicas:
            if r["child"].poll() is None:
                r["child"].kill()
            r["child"].wait(timeout=10)
        for p in etcd:
            p.kill()
            p.wait(timeout=10)
        for s in upstreams:
            s.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
