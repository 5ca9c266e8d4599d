//! `docs/admin-api.yaml` and the admin API agree: every operation in the spec is answered
//! (never 404 or 405), every other method on a spec path is 405, and paths outside it are 404.

mod common;

use common::blue_green;

/// `(method, path)` of every operation under `paths:` (two-space path keys, four-space
/// method keys), read without a YAML library.
fn spec_operations() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("docs/admin-api.yaml").unwrap();
    let mut in_paths = false;
    let mut path = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  /") {
            path = format!("/{}", key.trim_end().trim_end_matches(':'));
        } else if let Some(key) = line.strip_prefix("    ").filter(|k| !k.starts_with(' ')) {
            let method = key.trim_end().trim_end_matches(':');
            if ["get", "put", "post", "delete", "patch"].contains(&method) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_spec_operation_is_answered_and_nothing_else_is() {
    let plan = "[plans.default]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]\n";
    let bg = blue_green("blue = 90\ngreen = 10", plan).await;
    let ops = spec_operations();
    assert_eq!(ops.len(), 17, "{ops:?}");
    let backend = bg.blue.addr.to_string();
    for (method, template) in &ops {
        let path = template
            .replace("{pool}", "blue")
            .replace("{backend}", &backend)
            .replace("{action}", "pause");
        let body = match (method.as_str(), path.as_str()) {
            (_, "/split") => r#"{"blue": 90, "green": 10}"#,
            (_, "/switch") => r#"{"to": "blue"}"#,
            ("POST", "/rollouts") => r#"{"to": "green"}"#,
            _ => "",
        };
        if (method.as_str(), path.as_str()) == ("GET", "/events") {
            // A stream never ends: read its head only.
            let (status, _, _) = common::events::open_stream(bg.proxy.admin).await;
            assert_eq!(status, 200, "GET /events");
            continue;
        }
        let reply = bg.proxy.admin(method, &path, body).await;
        assert!(
            ![404, 405].contains(&reply.status),
            "{method} {path} is in the spec but answered {}: {}",
            reply.status,
            reply.text()
        );
        for other in ["GET", "PUT", "POST", "DELETE"] {
            if ops.iter().any(|(m, t)| m == other && t == template) {
                continue;
            }
            let reply = bg.proxy.admin(other, &path, "").await;
            assert_eq!(reply.status, 405, "{other} {path}: {}", reply.text());
            let allowed: Vec<&str> = ops
                .iter()
                .filter(|(_, t)| t == template)
                .map(|(m, _)| m.as_str())
                .collect();
            assert_eq!(reply.header("allow"), Some(allowed.join(", ")), "{path}");
        }
    }
    for path in [
        "/config",
        "/pools",
        "/version",
        "/api/status",
        "/backends/blue",
        "/status/x",
        "/ui/x.js",
        "/ui/../status",
    ] {
        let reply = bg.proxy.admin("GET", path, "").await;
        assert_eq!(
            reply.status, 404,
            "GET {path} is answered but not in the spec"
        );
    }
}
