//! Strict HTTP/1 framing at the front door, over real sockets: a raw client sends exact bytes
//! through the real proxy to a raw upstream that records every byte and parses leniently (as
//! the backends request smuggling exploits do). No request the client did not frame may reach
//! it; every ambiguous request gets a 4xx and a close.

mod common;

use std::time::Duration;

use common::raw::{exchange, RawReply, RecordingUpstream};
use common::TestProxy;

/// What must happen to a vector.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 4xx, the connection closed, no request parsed by the upstream.
    Refuse,
    /// Exactly these paths reach the upstream, each answered 200.
    Pass(&'static [&'static str]),
}

const TE: &str = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
const SMUGGLE: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// The table: (name, bytes, expectation). Vectors sent in two writes use `|` as the split.
fn vectors() -> Vec<(String, String, Expect)> {
    use Expect::*;
    let mut v: Vec<(String, String, Expect)> = Vec::new();
    let mut add = |name: &str, bytes: String, e: Expect| v.push((name.to_string(), bytes, e));

    // Well-framed controls: these must keep working.
    add(
        "get",
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\n".into(),
        Pass(&["/a"]),
    );
    add(
        "post-cl",
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".into(),
        Pass(&["/a"]),
    );
    add(
        "chunked",
        format!("{TE}5;n=v\r\nhello\r\n0\r\n\r\n"),
        Pass(&["/x"]),
    );
    add(
        "chunked-trailer",
        format!("{TE}5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        Pass(&["/x"]),
    );
    add(
        "chunked-upper",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n".into(),
        Pass(&["/x"]),
    );
    add(
        "te-tab-ows",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n0\r\n\r\n".into(),
        Pass(&["/x"]),
    );
    add(
        "http10-no-host",
        "GET /a HTTP/1.0\r\n\r\n".into(),
        Pass(&["/a"]),
    );
    add(
        "options-star",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".into(),
        Pass(&["*"]),
    );
    add(
        "absolute-form",
        "GET http://a.example/abs?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n".into(),
        Pass(&["/abs?q=1"]),
    );
    add(
        "absolute-form-other-host",
        "GET http://a.example/abs HTTP/1.1\r\nHost: b.example\r\n\r\n".into(),
        Refuse,
    );
    add(
        "absolute-form-userinfo",
        "GET http://u@a.example/abs HTTP/1.1\r\nHost: a.example\r\n\r\n".into(),
        Refuse,
    );
    add(
        "pipelined",
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n".into(),
        Pass(&["/a", "/b"]),
    );
    add(
        "leading-crlf",
        "\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n".into(),
        Pass(&["/a"]),
    );
    add(
        "smuggle-text-in-a-body",
        format!(
            "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{SMUGGLE}",
            SMUGGLE.len()
        ),
        Pass(&["/a"]),
    );
    add(
        "split-head",
        "GET /a HTTP/1.1\r\nHo|st: a\r\n\r\n".into(),
        Pass(&["/a"]),
    );
    add(
        "underscore-header",
        "GET /a HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n".into(),
        Pass(&["/a"]),
    );

    // The issue's vector: a bare LF ends a chunk line early for a lenient front end.
    add(
        "bare-lf-in-chunk-ext",
        format!("{TE}2;\nxx\r\n30\r\n0\r\n\r\n|{SMUGGLE}\r\n0\r\n\r\n"),
        Refuse,
    );
    add(
        "bare-lf-in-chunk-ext-after-head",
        format!("{TE}|2;\nxx\r\n30\r\n0\r\n\r\n{SMUGGLE}\r\n0\r\n\r\n"),
        Refuse,
    );
    // Every control octet but HTAB in a chunk extension, and in a chunk size.
    for c in (0u8..0x20).chain([0x7f]).filter(|&c| c != b'\t') {
        add(
            &format!("ctl-{c:#04x}-in-chunk-ext"),
            format!("{TE}2;a{}b\r\nxx\r\n0\r\n\r\n{SMUGGLE}", c as char),
            Refuse,
        );
    }
    for line in [
        "2\n",
        "2 \n",
        "0x2",
        "2 2",
        "-2",
        "+2",
        "",
        " 2",
        "2;\r",
        "11111111111111111",
        "g",
    ] {
        add(
            &format!("chunk-size-{line:?}"),
            format!("{TE}{line}\r\nxx\r\n0\r\n\r\n{SMUGGLE}"),
            Refuse,
        );
    }
    add(
        "chunk-data-too-long",
        format!("{TE}2\r\nxxx\r\n0\r\n\r\n{SMUGGLE}"),
        Refuse,
    );
    add(
        "chunk-data-bare-lf",
        format!("{TE}2\r\nxx\n0\r\n\r\n{SMUGGLE}"),
        Refuse,
    );
    add(
        "trailer-bare-lf",
        format!("{TE}0\r\nX: y\n\r\n{SMUGGLE}"),
        Refuse,
    );
    add(
        "trailer-obs-fold",
        format!("{TE}0\r\nX: y\r\n z\r\n\r\n{SMUGGLE}"),
        Refuse,
    );

    // CL / TE ambiguity (CL.TE, TE.CL, TE.TE).
    let body = format!("0\r\n\r\n{SMUGGLE}");
    let with = |headers: &str| format!("POST /x HTTP/1.1\r\nHost: a\r\n{headers}\r\n{body}");
    for headers in [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            body.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            body.len()
        ),
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n".into(),
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n".into(),
        "Transfer-Encoding: chunked, identity\r\n".into(),
        "Transfer-Encoding: identity, chunked\r\n".into(),
        "Transfer-Encoding: gzip, chunked\r\n".into(),
        "Transfer-Encoding: xchunked\r\n".into(),
        "Transfer-Encoding: chunkedx\r\n".into(),
        "Transfer-Encoding: \"chunked\"\r\n".into(),
        "Transfer-Encoding: chunked\x0b\r\n".into(),
        "Transfer-Encoding: \x0cchunked\r\n".into(),
        "Transfer-Encoding : chunked\r\n".into(),
        "Transfer-Encoding\t: chunked\r\n".into(),
        " Transfer-Encoding: chunked\r\n".into(),
        "X: y\r\n Transfer-Encoding: chunked\r\n".into(),
        "X: y\r\n\tTransfer-Encoding: chunked\r\n".into(),
        "Transfer-Encoding:\r\n chunked\r\n".into(),
        "Transfer-Encoding: chunked\rX: y\r\n".into(),
        "Transfer-Encoding: chunked\nX: y\r\n".into(),
        "Transfer-Encoding: chunked\x00\r\n".into(),
        "Content-Length: 5\r\nContent-Length: 5\r\n".into(),
        "Content-Length: 5, 5\r\n".into(),
        "Content-Length: 5\r\nContent-Length: 6\r\n".into(),
        "Content-Length: +5\r\n".into(),
        "Content-Length: -5\r\n".into(),
        "Content-Length: 0x5\r\n".into(),
        "Content-Length: 5 5\r\n".into(),
        "Content-Length: 99999999999999999999\r\n".into(),
        "Content-Length : 5\r\n".into(),
        "Content-Length:\x0b5\r\n".into(),
    ] {
        add(&format!("cl-te-{headers:?}"), with(&headers), Refuse);
    }
    add(
        "te-in-http10",
        format!("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{body}"),
        Refuse,
    );

    // Request lines.
    for line in [
        "GET  /x HTTP/1.1",
        "GET /x  HTTP/1.1",
        "GET /x HTTP/1.1 ",
        " GET /x HTTP/1.1",
        "GET\t/x HTTP/1.1",
        "GET /x\tHTTP/1.1",
        "GET /x",
        "GET /x HTTP/1.2",
        "GET /x HTTP/2.0",
        "GET /x HTTP/0.9",
        "GET /x http/1.1",
        "GET x HTTP/1.1",
        "GET * HTTP/1.1",
        "GET ./x HTTP/1.1",
        "GET http:/x HTTP/1.1",
        "GET http:///x HTTP/1.1",
        "GET ftp://a/x HTTP/1.1",
        "CONNECT a:443 HTTP/1.1",
        "GET /x\x00 HTTP/1.1",
        "GET /x\x7f HTTP/1.1",
        "GET /x\x1b HTTP/1.1",
        "G@T /x HTTP/1.1",
        "GET /x HTTP/1.1\r",
        "GET /x HTTP/1.1\rX",
    ] {
        add(
            &format!("request-line-{line:?}"),
            format!("{line}\r\nHost: a\r\n\r\n{SMUGGLE}"),
            Refuse,
        );
    }
    add(
        "request-line-bare-lf",
        format!("GET /x HTTP/1.1\nHost: a\r\n\r\n{SMUGGLE}"),
        Refuse,
    );

    // Host and other fields.
    for head in [
        "GET /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a@b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\n\n",
        "GET /x HTTP/1.1\r\nHost: a\n\n",
    ] {
        add(
            &format!("field-{head:?}"),
            format!("{head}{SMUGGLE}"),
            Refuse,
        );
    }
    v
}

#[tokio::test]
async fn no_request_the_client_did_not_frame_reaches_the_upstream() {
    let upstream = RecordingUpstream::start().await;
    let pools = common::pools_toml(&[("blue", &[upstream.addr])], "blue = 100");
    let proxy = TestProxy::start("", &pools).await;
    let vectors = vectors();
    assert!(vectors.len() >= 100, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    for (name, bytes, expect) in &vectors {
        let parts: Vec<&[u8]> = bytes.split('|').map(str::as_bytes).collect();
        let (before, bytes_before) = (upstream.seen().len(), upstream.bytes().len());
        let want = match expect {
            Expect::Pass(paths) => paths.len(),
            Expect::Refuse => 0,
        };
        let reply = send(proxy.addr, &parts, want).await;
        let seen = &upstream.seen()[before..];
        let arrived = &upstream.bytes()[bytes_before..];
        let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        let smuggled = String::from_utf8_lossy(arrived).contains("smuggled")
            && !name.starts_with("smuggle-text-in-a-body");
        let ok = match expect {
            Expect::Pass(want) => {
                paths == *want && reply.statuses() == vec![200; want.len()] && !smuggled
            }
            Expect::Refuse => {
                let status = reply.statuses().first().copied().unwrap_or(0);
                (400..500).contains(&status) && reply.closed && seen.is_empty() && !smuggled
            }
        };
        if !ok {
            failures.push(format!(
                "{name}: expected {expect:?}; client got {:?} (closed: {}), upstream parsed {paths:?}",
                String::from_utf8_lossy(&reply.bytes),
                reply.closed
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
    // Refused vectors are counted.
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    assert!(metrics.contains("switchback_client_closed_total{reason=\"bad-request\"}"));
}

/// Sends `parts` 300 ms apart; reads until `want` responses arrived (then stops waiting) or,
/// for `want == 0`, until the proxy closes.
async fn send(addr: std::net::SocketAddr, parts: &[&[u8]], want: usize) -> RawReply {
    let wait = if want == 0 {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(300)
    };
    let reply = exchange(addr, parts, Duration::from_millis(300), wait).await;
    if want > 0 && reply.statuses().len() < want {
        // A slow machine: give the answers more time once.
        return exchange(
            addr,
            parts,
            Duration::from_millis(300),
            Duration::from_secs(3),
        )
        .await;
    }
    reply
}

#[tokio::test]
async fn underscored_headers_are_dropped_and_forwarded_for_lines_are_combined() {
    let upstream = RecordingUpstream::start().await;
    let pools = common::pools_toml(&[("blue", &[upstream.addr])], "blue = 100");
    let proxy = TestProxy::start("", &pools).await;
    let request = "GET /h HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\nX-Kept: yes\r\n\r\n";
    let reply = exchange(
        proxy.addr,
        &[request.as_bytes()],
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reply.statuses(), [200]);
    let seen = upstream.seen().pop().unwrap();
    assert!(seen.header("content_length").is_empty());
    assert!(seen.header("x_forwarded_for").is_empty());
    assert_eq!(seen.header("x-kept"), ["yes"]);
    assert_eq!(
        seen.header("x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]
    );

    let replacing = TestProxy::start("forwarded-for = \"replace\"", &pools).await;
    exchange(
        replacing.addr,
        &[request.as_bytes()],
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn an_http10_request_without_host_gets_the_backend_as_host() {
    let upstream = RecordingUpstream::start().await;
    let pools = common::pools_toml(&[("blue", &[upstream.addr])], "blue = 100");
    let proxy = TestProxy::start("", &pools).await;
    let reply = exchange(
        proxy.addr,
        &[b"GET /old HTTP/1.0\r\n\r\n"],
        Duration::ZERO,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(reply.statuses(), [200]);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.header("host"), [upstream.addr.to_string()]);
}

#[tokio::test]
async fn a_valid_request_before_a_refused_one_in_the_same_segment_is_answered_first() {
    let upstream = RecordingUpstream::start().await;
    let pools = common::pools_toml(&[("blue", &[upstream.addr])], "blue = 100");
    let proxy = TestProxy::start("", &pools).await;
    let bytes = format!("GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{SMUGGLE}");
    let reply = exchange(
        proxy.addr,
        &[bytes.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        reply.statuses(),
        [200, 400],
        "{:?}",
        String::from_utf8_lossy(&reply.bytes)
    );
    assert!(reply.closed);
    let paths: Vec<String> = upstream.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/first"]);
}
