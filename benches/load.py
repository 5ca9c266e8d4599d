#!/usr/bin/env python3
"""Side-by-side load benchmark: switchback against nginx, HAProxy, plain Pingora and the lean
HTTP/1 loop on Pingora's parts (examples/lean_pingora.rs, the ceiling without `ProxyHttp`), each
lever of the data path on its own, Pingora's floor (a hello server against nginx's
`return 200`), two workers, TLS termination, and idle memory per connection.

Every contender runs with one worker thread (the 2-thread rows: two), upstream keep-alive on,
access logs off, the same 90/10 split over one shared fast upstream (nginx on two ports).
Contenders are interleaved over rounds, the order rotated each round (A B C, B C A, ...), and
medians are reported, each also as a ratio to its reference measured in the same run.

    make bench-load                 # full run (release build)
    BENCH_QUICK=1 make bench-load   # smoke: debug build, a few seconds per contender

Writes target/bench-load.json. Only loopback is ever targeted; every load is bounded in time.
"""
import json, os, socket, sys, threading, time
import urllib.request

from load_lib import (QUICK, TARGET, Run, build, cpu_seconds, ensure_tools, haproxy_maxconn, open_loop, rss_kib, say,
                      stop, wrk)
import load_report

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "4"))
IDLE_CONNS = 1000 if QUICK else 10_000

# The main table (closed and open loop), then rows measured closed-loop only.
MAIN = ["direct", "switchback", "switchback-nometrics", "nginx", "haproxy", "pingora", "lean", "lean+guard"]
LEVERS = ["pingora+l4", "pingora+nosteal", "pingora+nomodules", "pingora+l4+nosteal+nomodules"]
HELLO = ["hello", "nginx-hello"]
TWO = ["switchback-2t", "nginx-2w"]
IDLE = ["switchback", "nginx", "haproxy", "pingora", "lean"]


def measure(run, name, rate=None):
    p, port = run.start(name)
    try:
        wrk(port, 1)  # warm-up: pools filled, caches hot
        cpu0 = cpu_seconds(p.pid) if p else (0, 0)
        closed = wrk(port, SECONDS)
        cpu = [b - a for a, b in zip(cpu0, cpu_seconds(p.pid))] if p else None
        n = max(closed["requests"], 1)
        result = {**closed,
                  "cpu_us_per_req": 1e6 * sum(cpu) / n if cpu else None,
                  "user_us_per_req": 1e6 * cpu[0] / n if cpu else None,
                  "sys_us_per_req": 1e6 * cpu[1] / n if cpu else None}
        if rate:
            result.update(open_loop(run.open_loop, port, SECONDS, rate))
            result["failed"] += result.pop("open_loop_errors")
        result["peak_rss_kib"] = rss_kib(p.pid, "VmHWM") if p else None
        return result
    finally:
        stop(p)


def rounds(run, contenders, rate=None):
    """Each contender ROUNDS times, the order rotated every round."""
    results = {c: [] for c in contenders}
    for r in range(ROUNDS):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            say(f"round {r + 1}/{ROUNDS}: {c}")
            results[c].append(measure(run, c, rate))
    return results


def tls_measure(run, name):
    """TLS termination: keep-alive HTTP/1.1 throughput, and new handshakes per second (a
    fresh connection, and a full handshake, for every request)."""
    p, port = run.start(name)
    try:
        wrk(port, 1, scheme="https")
        cpu0 = sum(cpu_seconds(p.pid))
        keep = wrk(port, SECONDS, scheme="https")
        cpu = sum(cpu_seconds(p.pid)) - cpu0
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


def open_streams(admin, count):
    """`count` dashboard event streams (GET /events), each read by a thread until closed."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", admin))
        s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\n\r\n".encode())
        head = s.recv(4096)
        assert b" 200 " in head.split(b"\r\n")[0], head[:80]
        threading.Thread(target=lambda s=s: drain(s), daemon=True).start()
        socks.append(s)
    return socks


def drain(s):
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


def streams_scenario(run):
    """Throughput with 32 dashboard event streams open (the most the admin listener serves)
    against none, ROUNDS pairs on one process, which one goes first alternating: the streams
    run on the control runtime, so the data path should not notice them."""
    p, port = run.start("switchback")
    none, with_streams = [], []

    def streaming():
        socks = open_streams(run.admin, 32)
        time.sleep(1)  # every stream past its snapshot
        with_streams.append(wrk(port, SECONDS)["rps"])
        for s in socks:
            s.close()
        time.sleep(2)  # each slot is freed at its stream's next event

    try:
        wrk(port, 1)
        for r in range(ROUNDS):
            if r % 2:
                streaming()
            none.append(wrk(port, SECONDS)["rps"])
            if not r % 2:
                streaming()
        ratio = sorted(a / b for a, b in zip(with_streams, none))[len(none) // 2]
        return {"none_rps": none, "streams_rps": with_streams, "ratio": ratio}
    finally:
        stop(p)


def idle_scenario(run, name):
    """RSS of the proxy holding IDLE_CONNS idle keep-alive client connections (HAProxy: as many
    as its maxconn allows under the descriptor limit), each having been answered one request;
    per connection = (RSS - RSS before) / connections."""
    p, port = run.start(name)
    socks = []
    count = min(IDLE_CONNS, haproxy_maxconn() - 100) if name == "haproxy" else IDLE_CONNS
    try:
        base = rss_kib(p.pid)
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            s.recv(4096)
        time.sleep(0.5)
        rss = rss_kib(p.pid)
        return {"connections": len(socks), "rss_kib": rss, "baseline_rss_kib": base,
                "kib_per_conn": (rss - base) / len(socks)}
    finally:
        for s in socks:
            s.close()
        stop(p)


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # 10,000 idle connections need more descriptors than some shells allow (root may raise it)
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    ensure_tools()
    started = time.time()
    run = Run(build())
    out = {"quick": QUICK, "rounds": ROUNDS, "seconds": SECONDS, "date": time.strftime("%Y-%m-%d")}
    try:
        p, port = run.start("nginx")
        out["open_loop_rate"] = rate = 0.5 * wrk(port, 2)["rps"]  # about half of nginx's maximum
        stop(p)
        out["main"] = rounds(run, MAIN, rate)
        out["levers"] = rounds(run, ["pingora"] + LEVERS)
        out["hello"] = rounds(run, HELLO)
        out["two"] = rounds(run, TWO)
        tls = {c: [] for c in ("switchback-tls", "nginx-tls")}
        for r in range(ROUNDS):
            for c in (list(tls) if r % 2 == 0 else list(reversed(list(tls)))):
                say(f"TLS round {r + 1}/{ROUNDS}: {c}")
                tls[c].append(tls_measure(run, c))
        out["tls"] = tls
        say("scenario: split flipping 10/s")
        out["flip"] = flip_scenario(run)
        say("scenario: 32 dashboard event streams open")
        out["streams"] = streams_scenario(run)
        out["idle"] = {}
        for c in IDLE:
            say(f"scenario: {IDLE_CONNS} idle keep-alive connections: {c}")
            out["idle"][c] = idle_scenario(run, c)
    finally:
        run.close()
    out["elapsed"] = time.time() - started
    failed = load_report.report(out)
    os.makedirs(TARGET, exist_ok=True)
    path = os.path.join(TARGET, "bench-load.json")
    json.dump(out, open(path, "w"), indent=1)
    print(f"written {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
