//! The listen addresses side by side: `[proxy] listen`, `[tls] listen` and `[admin] listen`
//! must all bind at once, and clients must have somewhere to connect.
//!
//! ```text
//! proxy.listen ─┐
//! tls.listen   ─┼─ no two take one port: same family, and the same address or a wildcard
//! admin.listen ─┘  (0.0.0.0, [::]) on either side; different families never clash
//! proxy.listen = [] ─ only beside tls.listen (a TLS-only front door)
//! ```

use std::net::SocketAddr;

use super::problem::{Problem, ProblemKind};
use super::raw::RawConfig;
use super::rules::clash_with;

/// Checks the validated listeners together: `[admin] listen` against the plain (`plain`) and
/// TLS (`secure`) listeners (`[tls]` against `[proxy]` is checked by `tls::front`), and an
/// empty `[proxy] listen` only beside `[tls]`.
pub(super) fn check(
    raw: &RawConfig,
    plain: &[SocketAddr],
    secure: &[SocketAddr],
    admin: Option<SocketAddr>,
    problems: &mut Vec<Problem>,
) {
    let no_plain = raw.proxy.listen.as_ref().is_some_and(Vec::is_empty);
    if no_plain && raw.tls.is_none() {
        problems.push(Problem::at("proxy.listen", ProblemKind::NoListener));
    }
    let redirect = raw.tls.as_ref().and_then(|t| t.redirect_http) == Some(true);
    if no_plain && redirect {
        problems.push(Problem::at(
            "tls.redirect-http",
            ProblemKind::RedirectWithoutPlain,
        ));
    }
    let Some(admin) = admin else { return };
    let text = admin.to_string();
    let found = clash_with(&text, admin, "proxy.listen", plain)
        .or_else(|| clash_with(&text, admin, "tls.listen", secure));
    if let Some(kind) = found {
        problems.push(Problem::at("admin.listen", kind));
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::clash;
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_wildcard_and_a_specific_address_of_one_family_on_one_port_clash() {
        for (x, y) in [
            ("0.0.0.0:9900", "127.0.0.1:9900"),
            ("127.0.0.1:9900", "0.0.0.0:9900"),
            ("0.0.0.0:9900", "0.0.0.0:9900"),
            ("10.0.0.1:9900", "10.0.0.1:9900"),
            ("[::]:9900", "[::1]:9900"),
            ("[::1]:9900", "[::]:9900"),
            ("[::1]:9900", "[::1]:9900"),
            // The IPv6 wildcard is dual-stack; a mapped address is its IPv4 address.
            ("0.0.0.0:9900", "[::]:9900"),
            ("127.0.0.1:9900", "[::]:9900"),
            ("[::ffff:127.0.0.1]:9900", "127.0.0.1:9900"),
        ] {
            assert!(clash(a(x), a(y)), "{x} and {y}");
        }
    }

    #[test]
    fn other_ports_addresses_families_and_port_zero_do_not_clash() {
        for (x, y) in [
            ("127.0.0.1:9900", "127.0.0.1:9901"),
            ("127.0.0.1:9900", "10.0.0.1:9900"),
            ("0.0.0.0:9900", "[::1]:9900"),
            ("127.0.0.1:9900", "[::1]:9900"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("0.0.0.0:0", "127.0.0.1:0"),
        ] {
            assert!(!clash(a(x), a(y)), "{x} and {y}");
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match crate::config::parse(text) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    const POOLS: &str = "[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n";
    const TLS: &str = "certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n";

    #[test]
    fn the_admin_listener_is_checked_against_the_plain_and_tls_listeners() {
        let found = problems(&format!(
            "[proxy]\nlisten = [\"0.0.0.0:8080\"]\n[admin]\nlisten = \"127.0.0.1:8080\"\n{POOLS}"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "admin.listen: 127.0.0.1:8080 takes the port of proxy.listen 0.0.0.0:8080"
            ),
            "{found:?}"
        );
        let found = problems(&format!(
            "[admin]\nlisten = \"[::1]:8443\"\n[tls]\nlisten = [\"[::]:8443\"]\n{TLS}{POOLS}"
        ));
        assert!(
            found[0].starts_with("admin.listen: [::1]:8443 takes the port of tls.listen [::]:8443"),
            "{found:?}"
        );
        let found = problems(&format!(
            "[proxy]\nlisten = [\"127.0.0.1:8443\"]\n[tls]\nlisten = [\"0.0.0.0:8443\"]\n{TLS}{POOLS}"
        ));
        assert!(
            found[0].starts_with(
                "tls.listen[0]: 0.0.0.0:8443 takes the port of proxy.listen 127.0.0.1:8443"
            ),
            "{found:?}"
        );
        let fine = format!(
            "[proxy]\nlisten = [\"[::1]:8080\"]\n[admin]\nlisten = \"127.0.0.1:8080\"\n{POOLS}"
        );
        assert_eq!(problems(&fine), Vec::<String>::new());
        let dual_stack = format!(
            "[proxy]\nlisten = [\"[::]:8080\"]\n[admin]\nlisten = \"127.0.0.1:8080\"\n{POOLS}"
        );
        assert_eq!(problems(&dual_stack).len(), 1);
    }

    #[test]
    fn an_empty_proxy_listen_needs_a_tls_listener() {
        let tls_only =
            format!("[proxy]\nlisten = []\n[tls]\nlisten = [\"127.0.0.1:8443\"]\n{TLS}{POOLS}");
        assert_eq!(problems(&tls_only), Vec::<String>::new());
        let found = problems(&format!("[proxy]\nlisten = []\n{POOLS}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("proxy.listen: empty and there is no [tls] listen"),
            "{found:?}"
        );
        let redirect = tls_only.replace(TLS, &format!("{TLS}redirect-http = true\n"));
        assert_eq!(
            problems(&redirect),
            ["tls.redirect-http: true, but [proxy] listen is empty: there is no plain listener to redirect from; remove the key or add a plain listen address"]
        );
        let invalid_only = problems(&format!("[proxy]\nlisten = [\"nowhere\"]\n{POOLS}"));
        assert_eq!(
            invalid_only.len(),
            1,
            "one problem, not two: {invalid_only:?}"
        );
    }
}
