"""The load benchmark's report (benches/load.py): medians, ratios to the reference measured
in the same run, and the failed-request count that decides the exit status."""
import statistics

KEYS = ["rps", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req", "p50_ms", "p99_ms", "p999_ms",
        "peak_rss_kib", "failed"]


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def medians(results, keys=KEYS):
    return {c: {k: median(rows, k) for k in keys} for c, rows in results.items()}


def fmt(v, f):
    return f.format(v) if v is not None else "-"


def ratio(a, b):
    return a / b if a is not None and b else None


def table(title, rows, ref, idle=None):
    print(f"\n{title}")
    print(f"{'contender':<30} {'req/s':>8} {'x ref':>6} {'cpu us/req':>10} {'user':>6} {'sys':>6} {'x ref':>6}"
          f" {'p50 ms':>7} {'p99 ms':>8} {'p99.9 ms':>8} {'peak MiB':>8} {'idle KiB/conn':>13} {'failed':>6}")
    r0 = rows[ref]
    for c, row in rows.items():
        per_conn = idle.get(c, {}).get("kib_per_conn") if idle else None
        print(f"{c:<30} {fmt(row['rps'], '{:.0f}'):>8} {fmt(ratio(row['rps'], r0['rps']), '{:.2f}'):>6}"
              f" {fmt(row['cpu_us_per_req'], '{:.1f}'):>10} {fmt(row['user_us_per_req'], '{:.1f}'):>6}"
              f" {fmt(row['sys_us_per_req'], '{:.1f}'):>6} {fmt(ratio(row['cpu_us_per_req'], r0['cpu_us_per_req']), '{:.2f}'):>6}"
              f" {fmt(row['p50_ms'], '{:.2f}'):>7} {fmt(row['p99_ms'], '{:.2f}'):>8} {fmt(row['p999_ms'], '{:.2f}'):>8}"
              f" {fmt(row['peak_rss_kib'] and row['peak_rss_kib'] / 1024, '{:.1f}'):>8} {fmt(per_conn, '{:.1f}'):>13}"
              f" {fmt(row['failed'], '{:.0f}'):>6}")


def report(out):
    """Prints every table; returns the number of failed requests."""
    quick = " (QUICK: debug build, figures meaningless)" if out["quick"] else ""
    main, idle = medians(out["main"]), out["idle"]
    table(f"load benchmark: {out['rounds']} round(s) x {out['seconds']}s, wrk -t1 -c64 closed loop, open loop "
          f"(examples/open_loop.rs) at {out['open_loop_rate']:.0f} req/s; x ref = x nginx{quick}", main, "nginx", idle)
    sb, pg, hp = main["switchback"], main["pingora"], main["haproxy"]
    print(f"\nswitchback / plain pingora throughput: {sb['rps'] / pg['rps']:.3f}   switchback / haproxy: "
          f"{sb['rps'] / hp['rps']:.3f}   metrics on / off: {sb['rps'] / main['switchback-nometrics']['rps']:.3f}")
    lean, guarded = main["lean"], main["lean+guard"]
    print(f"the ceiling without ProxyHttp: lean loop / switchback {lean['rps'] / sb['rps']:.3f}, behind switchback's "
          f"framing guard {guarded['rps'] / sb['rps']:.3f}   lean loop / plain pingora {lean['rps'] / pg['rps']:.3f}")
    table("levers, each on its own, on plain Pingora (closed loop); x ref = x plain Pingora", medians(out["levers"]),
          "pingora")
    hello = medians(out["hello"])
    table("the floor: Pingora as an HTTP server (ServeHttp) against nginx `return 200`; x ref = x nginx", hello,
          "nginx-hello")
    two = medians(out["two"])
    table("two workers each (the 2-core machine also runs wrk and the upstream); x ref = x nginx", two, "nginx-2w")
    flip = out["flip"]
    print(f"\nsplit flipping 10/s: {flip['flipping_rps']:.0f} vs {flip['steady_rps']:.0f} req/s steady = {flip['ratio']:.3f}, "
          f"{flip['flips']} flips, {flip['failed']} failed requests")
    streams = out["streams"]
    print(f"32 dashboard event streams open: {streams['ratio']:.3f}x the throughput with none (median of "
          f"{len(streams['none_rps'])} alternating pairs: {[round(r) for r in streams['streams_rps']]} vs "
          f"{[round(r) for r in streams['none_rps']]} req/s)")
    for c, i in idle.items():
        print(f"{i['connections']} idle keep-alive connections, {c}: {i['rss_kib'] / 1024:.1f} MiB "
              f"({i['kib_per_conn']:.2f} KiB per connection over {i['baseline_rss_kib'] / 1024:.1f} MiB at start)")
    tls = medians(out["tls"], ("keepalive_rps", "keepalive_cpu_us_per_req", "handshake_rps", "failed"))
    st, nt = tls["switchback-tls"], tls["nginx-tls"]
    print(f"TLS (same ECDSA P-256 certificate, TLS 1.3, 1 worker): keep-alive switchback {st['keepalive_rps']:.0f} vs nginx "
          f"{nt['keepalive_rps']:.0f} req/s = {st['keepalive_rps'] / nt['keepalive_rps']:.2f}x; new handshakes "
          f"(Connection: close, 16 clients) switchback {st['handshake_rps']:.0f} vs nginx {nt['handshake_rps']:.0f}/s"
          f" = {st['handshake_rps'] / nt['handshake_rps']:.2f}x")
    print(f"total time {out['elapsed']:.0f}s")
    failed = flip["failed"]
    for group in ("main", "levers", "hello", "two"):
        failed += sum((row["failed"] or 0) for row in medians(out[group]).values())
    failed += sum((row["failed"] or 0) for row in tls.values())
    return failed
