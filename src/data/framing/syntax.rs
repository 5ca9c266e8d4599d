//! The line-level syntax of HTTP/1 requests (RFC 9110 §5, RFC 9112 §3, §5, §7.1), as pure
//! functions over one line without its CRLF, and the byte classes they check against.

use super::{bad, Head, Reject};

/// `method SP request-target SP HTTP-version`, one space each.
pub(super) fn request_line(content: &[u8]) -> Result<Head, Reject> {
    let mut parts = content.splitn(3, |&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if method.is_empty() || !method.iter().all(|&b| TCHAR[b as usize]) {
        return Err(bad("invalid method"));
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => {
            return Err(bad(
                "unsupported HTTP version or extra space in request line",
            ))
        }
    };
    if target.is_empty() || !target.iter().all(|&b| TARGET[b as usize]) {
        return Err(bad("invalid request target"));
    }
    let options = method == b"OPTIONS";
    let form_ok = match target[0] {
        b'/' => true,
        b'*' => target.len() == 1 && options,
        _ => absolute_form(target),
    };
    if !form_ok || method == b"CONNECT" {
        return Err(bad("request target is not origin-form, absolute-form or *"));
    }
    Ok(Head {
        http10,
        ..Head::default()
    })
}

/// `http://authority...` or `https://authority...` with a non-empty authority.
fn absolute_form(target: &[u8]) -> bool {
    let rest = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        &target[7..]
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        &target[8..]
    } else {
        return false;
    };
    !matches!(rest.first(), None | Some(b'/' | b'?' | b'#'))
}

/// `name ":" OWS value OWS`: returns the name and the trimmed value.
pub(super) fn field(content: &[u8]) -> Result<(&[u8], &[u8]), Reject> {
    if matches!(content[0], b' ' | b'\t') {
        return Err(bad("obsolete line folding"));
    }
    let Some(colon) = memchr::memchr(b':', content) else {
        return Err(bad("header field without a colon"));
    };
    let name = &content[..colon];
    if name.is_empty() || !name.iter().all(|&b| TCHAR[b as usize]) {
        return Err(bad("invalid header field name"));
    }
    let value = trim_ows(&content[colon + 1..]);
    if !value.iter().all(|&b| VALUE[b as usize]) {
        return Err(bad("control character in a header field value"));
    }
    Ok((name, value))
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `1*DIGIT`, at most 18 digits (no overflow).
pub(super) fn content_length(value: &[u8]) -> Result<u64, Reject> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    Ok(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `1*16HEXDIG [BWS] [";" extension]` where extensions hold no control octet but HTAB.
pub(super) fn chunk_size(content: &[u8]) -> Result<u64, Reject> {
    let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad("invalid chunk size"));
    }
    let rest = &content[digits..];
    let ws = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match rest.get(ws) {
        None if ws == 0 => {}
        Some(b';') if rest[ws..].iter().all(|&b| VALUE[b as usize]) => {}
        _ => return Err(bad("invalid chunk extension")),
    }
    Ok(content[..digits].iter().fold(0u64, |n, &d| {
        n << 4 | u64::from((d as char).to_digit(16).unwrap_or(0))
    }))
}

/// Byte classes, as tables so a check costs a load per byte.
macro_rules! table {
    (|$b:ident| $ok:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $ok;
            i += 1;
        }
        t
    }};
}

/// `tchar` (RFC 9110 §5.6.2).
static TCHAR: [bool; 256] = table!(|b| {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
});

/// Field values and chunk extensions: HTAB, SP, visible ASCII, obs-text; no other control.
static VALUE: [bool; 256] = table!(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));

/// Request targets: visible ASCII and obs-text; no space, no control.
static TARGET: [bool; 256] = table!(|b| b > 0x20 && b != 0x7f);

/// `Host`: reg-name, IP literal and port characters (RFC 3986 §3.2.2).
pub(super) static HOST: [bool; 256] = table!(|b| {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
        )
});
