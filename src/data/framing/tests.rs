use super::*;

use rand::{Rng, SeedableRng};

/// Feeds `data` whole and returns the verdict and the heads completed.
fn verdict(data: &[u8]) -> (Result<(), Reject>, u64) {
    let mut f = Framing::default();
    let r = f.feed(data);
    (r, f.heads())
}

fn ok(data: &str) -> u64 {
    let (r, heads) = verdict(data.as_bytes());
    assert_eq!(r, Ok(()), "{data:?} should be accepted");
    heads
}

fn refused(data: &str) -> Reject {
    match verdict(data.as_bytes()).0 {
        Err(r) => r,
        Ok(()) => panic!("{data:?} should be refused"),
    }
}

#[test]
fn well_framed_requests_pass_and_are_counted() {
    assert_eq!(ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    assert_eq!(ok("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 2);
    assert_eq!(
        ok("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\t\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"),
        1
    );
    assert_eq!(ok("GET / HTTP/1.0\r\n\r\n"), 1, "HTTP/1.0 may omit Host");
    assert_eq!(ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    assert_eq!(ok("GET http://a.example/x HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    assert_eq!(
        ok("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        1,
        "a leading blank line is ignored"
    );
    assert_eq!(ok("GET / HTTP/1.1\r\nHost: a\r\nX: é obs-text\r\n\r\n"), 1);
}

#[test]
fn the_chunk_line_smuggling_vector_is_refused() {
    let r = refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n30\r\n0\r\n\r\n");
    assert_eq!(r.status, 400);
    for line in [
        "2;\rx", "2;a\x00b", "2;\x7f", "2;\x1b", "2 x", "0x2", "", "2\n",
    ] {
        refused(&format!(
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nxx\r\n0\r\n\r\n"
        ));
    }
    refused(
        "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
    );
    refused(
        "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxxx\r\n0\r\n\r\n",
    );
}

#[test]
fn ambiguous_heads_are_refused() {
    let cases = [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        "GET  /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x  HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET\t/x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
        "G(T /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\n: empty-name\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n",
        "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for case in cases {
        assert_eq!(refused(case).status, 400, "{case:?}");
    }
}

#[test]
fn an_oversized_head_is_431() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD)
    );
    assert_eq!(refused(&big).status, 431);
}

#[test]
fn after_an_upgrade_request_the_bytes_wait_for_the_proxys_decision() {
    let upgrade =
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    let early = b"\x81\x85garbage\r\n";
    // Held, unchecked; no tunnel until the proxy says so.
    let mut f = Framing::default();
    f.feed(upgrade).unwrap();
    f.feed(early).unwrap();
    assert!(f.awaits_upgrade() && !f.is_tunnel());
    assert_eq!(f.partial_head(), early.len());
    // Upgraded: a tunnel, nothing checked any more.
    f.enter_tunnel();
    assert!(f.is_tunnel());
    f.feed(b"\x81\x85\x00\n\r\x00garbage").unwrap();
    // Declined: the held bytes are checked as the next request.
    let mut f = Framing::default();
    f.feed(upgrade).unwrap();
    f.feed(early).unwrap();
    f.upgrade_declined();
    assert!(!f.awaits_upgrade());
    assert!(f.feed(early).is_err());
    // A pipelined request after a declined upgrade is served as any.
    let mut f = Framing::default();
    f.feed(upgrade).unwrap();
    f.upgrade_declined();
    f.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(f.heads(), 2);
}

#[test]
fn only_a_websocket_upgrade_with_the_upgrade_option_from_http11_waits() {
    for head in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
        b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ] {
        let mut f = Framing::default();
        f.feed(head).unwrap();
        assert!(!f.awaits_upgrade(), "{:?}", String::from_utf8_lossy(head));
        assert!(f.feed(b"\x81\x85garbage\r\n").is_err());
    }
    let mut f = Framing::default();
    let with_body = b"POST /ws HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, UPGRADE\r\nupgrade: WebSocket\r\nContent-Length: 3\r\n\r\n";
    f.feed(with_body).unwrap();
    assert!(!f.awaits_upgrade(), "not before its body ended");
    f.feed(b"abc").unwrap();
    assert!(f.awaits_upgrade());
}

#[test]
fn request_start_marks_where_a_refused_request_began() {
    let good = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut f = Framing::default();
    let mut data = good.to_vec();
    data.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert!(f.feed(&data).is_err());
    assert_eq!(f.request_start(), good.len() as u64);
    assert_eq!(f.heads(), 1);
}

#[test]
fn partial_head_counts_the_bytes_of_an_unfinished_head() {
    let mut f = Framing::default();
    f.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nabGET / HT")
        .unwrap();
    assert_eq!(f.partial_head(), "GET / HT".len());
    f.feed(b"TP/1.1\r\nHost").unwrap();
    assert_eq!(f.partial_head(), "GET / HTTP/1.1\r\nHost".len());
    f.feed(b": a\r\n\r\n").unwrap();
    assert_eq!(f.partial_head(), 0);
    assert!(f.is_idle());
}

/// Any split of the bytes into reads gives the same verdict and the same heads count.
#[test]
fn the_verdict_does_not_depend_on_how_the_bytes_are_split() {
    let samples: Vec<Vec<u8>> = vec![
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n30\r\n0\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET  / HTTP/1.1\r\n\r\n".to_vec(),
        b"\r\nGET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n".to_vec(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for data in &samples {
        let (whole, heads) = verdict(data);
        for _ in 0..500 {
            let mut f = Framing::default();
            let mut rest = &data[..];
            let mut result = Ok(());
            while !rest.is_empty() && result.is_ok() {
                let n = rng.gen_range(1..=rest.len().min(9));
                result = f.feed(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(
                result.is_ok(),
                whole.is_ok(),
                "{:?}",
                String::from_utf8_lossy(data)
            );
            if whole.is_ok() {
                assert_eq!(f.heads(), heads);
            }
        }
    }
}
