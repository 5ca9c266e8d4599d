use std::path::PathBuf;

use super::{shared, SharedState};
use crate::config::raw::RawConfig;

/// The shared state of a file holding `text`, this host being named `host`; or its problems.
fn shared_of(text: &str, host: &str) -> Result<Option<SharedState>, Vec<String>> {
    let raw: RawConfig = toml::from_str(text).unwrap();
    let mut problems = Vec::new();
    let out = shared(&raw, || host.to_string(), &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.iter().map(ToString::to_string).collect())
    }
}

/// The problems of `[state]` holding `lines` (and `[log]` holding `log`).
fn problems(lines: &str) -> Vec<String> {
    shared_of(&format!("[state]\n{lines}"), "edge-1").unwrap_err()
}

const HTTP: &str = "etcd = [\"http://10.0.0.1:2379\"]\n";
const HTTPS: &str = "etcd = [\"https://10.0.0.1:2379\"]\n";

#[test]
fn a_full_https_section_is_kept_as_written() {
    let text = r#"
[state]
dir = "/var/lib/switchback"
etcd = ["https://10.0.0.1:2379/", "https://etcd-2.example:2379", "https://[::1]:2379"]
etcd-prefix = "/switchback/prod-eu"
replica = "edge-1.eu_west"
etcd-ca-file = "etcd/ca.pem"
etcd-cert = "etcd/client.pem"
etcd-key = "etcd/client.key"
etcd-user = "switchback"
etcd-password-file = "/run/secrets/etcd"
[log]
shared-keep = 500
"#;
    let state = shared_of(text, "unused").unwrap().unwrap();
    assert_eq!(
        state,
        SharedState {
            endpoints: vec![
                "https://10.0.0.1:2379".into(),
                "https://etcd-2.example:2379".into(),
                "https://[::1]:2379".into(),
            ],
            prefix: "/switchback/prod-eu".into(),
            replica: "edge-1.eu_west".into(),
            ca_file: Some(PathBuf::from("etcd/ca.pem")),
            client_cert: Some(("etcd/client.pem".into(), "etcd/client.key".into())),
            auth: Some(("switchback".into(), "/run/secrets/etcd".into())),
            keep: 500,
        }
    );
}

#[test]
fn only_etcd_takes_the_default_prefix_keep_and_this_hosts_name() {
    let state = shared_of(&format!("[state]\n{HTTP}"), "web-7")
        .unwrap()
        .unwrap();
    assert_eq!(state.endpoints, ["http://10.0.0.1:2379"]);
    assert_eq!(state.prefix, "/switchback");
    assert_eq!(state.replica, "web-7");
    assert_eq!(state.keep, 10_000);
    assert_eq!(
        (state.ca_file, state.client_cert, state.auth),
        (None, None, None)
    );
}

#[test]
fn a_host_name_that_is_no_replica_name_asks_for_one() {
    let long = "h".repeat(64);
    for host in ["web 7", long.as_str()] {
        let problems = shared_of(&format!("[state]\n{HTTP}"), host).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("state.replica: this host's name"));
        assert!(problems[0].ends_with("set [state] replica"));
    }
}

#[test]
fn without_etcd_there_is_no_shared_state_and_shared_keep_is_only_range_checked() {
    assert_eq!(shared_of("", "h"), Ok(None));
    assert_eq!(shared_of("[log]\nshared-keep = 100\n", "h"), Ok(None));
    assert_eq!(shared_of("[log]\nshared-keep = 1000000\n", "h"), Ok(None));
    for bad in [0, 99, 1_000_001] {
        let problems = shared_of(&format!("[log]\nshared-keep = {bad}\n"), "h").unwrap_err();
        assert_eq!(
            problems,
            [format!(
                "log.shared-keep: {bad} is out of range; expected 100 to 1000000"
            )]
        );
    }
}

#[test]
fn every_other_key_without_etcd_is_named() {
    let problems = problems(
        "etcd-prefix = \"/p\"\nreplica = \"r\"\netcd-ca-file = \"ca\"\netcd-cert = \"c\"\n\
         etcd-key = \"k\"\netcd-user = \"u\"\netcd-password-file = \"pw\"\n",
    );
    let keys = [
        "etcd-prefix",
        "replica",
        "etcd-ca-file",
        "etcd-cert",
        "etcd-key",
        "etcd-user",
        "etcd-password-file",
    ];
    let expected: Vec<String> = keys
        .iter()
        .map(|k| format!("state.{k}: only applies with [state] etcd"))
        .collect();
    assert_eq!(problems, expected);
}

#[test]
fn an_empty_endpoint_list_is_rejected() {
    assert_eq!(
        problems("etcd = []\n"),
        ["state.etcd: must list at least one entry"]
    );
}

#[test]
fn endpoints_must_be_http_urls_with_host_and_port_only() {
    let bad = [
        "10.0.0.1:2379",
        "grpc://10.0.0.1:2379",
        "http://10.0.0.1",
        "http://10.0.0.1:0",
        "http://10.0.0.1:2379/v3",
        "http://10.0.0.1:2379/?x=1",
        "http://root@10.0.0.1:2379",
        "http://:2379",
        "",
    ];
    let list: Vec<String> = bad.iter().map(|b| format!("{b:?}")).collect();
    let problems = problems(&format!("etcd = [{}]\n", list.join(", ")));
    assert_eq!(problems.len(), bad.len(), "{problems:?}");
    for (i, (problem, text)) in problems.iter().zip(bad).enumerate() {
        let head = format!("state.etcd[{i}]: invalid address {text:?}: ");
        assert!(problem.starts_with(&head), "{problem}");
    }
}

#[test]
fn mixed_schemes_and_duplicates_are_named_at_their_index() {
    let problems = problems("etcd = [\"http://a:2379\", \"https://b:2379\", \"http://a:2379/\"]\n");
    assert_eq!(
        problems,
        [
            "state.etcd[1]: \"https://b:2379\" is https but \"http://a:2379\" is http: every endpoint must use the same scheme",
            "state.etcd[2]: http://a:2379/ is listed more than once",
        ]
    );
}

#[test]
fn a_prefix_starts_with_a_slash_and_holds_no_space_or_trailing_slash() {
    let long = format!("/{}", "p".repeat(200));
    for bad in [
        "switchback",
        "/",
        "/switchback/",
        "/prod eu",
        "",
        long.as_str(),
    ] {
        let problems = problems(&format!("{HTTP}etcd-prefix = {bad:?}\n"));
        assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        assert!(
            problems[0].starts_with("state.etcd-prefix: "),
            "{problems:?}"
        );
    }
    let fits = format!("/{}", "p".repeat(199));
    for good in ["/s", "/switchback/prod-eu", fits.as_str()] {
        let text = format!("[state]\n{HTTP}etcd-prefix = {good:?}\n");
        assert_eq!(shared_of(&text, "h").unwrap().unwrap().prefix, good);
    }
}

#[test]
fn a_replica_name_is_one_to_63_plain_characters() {
    let long = "r".repeat(64);
    for bad in ["edge 1", "", "edge/1", "édge", long.as_str()] {
        let problems = problems(&format!("{HTTP}replica = {bad:?}\n"));
        assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        assert!(problems[0].starts_with("state.replica: "), "{problems:?}");
    }
    let fits = "r".repeat(63);
    let text = format!("[state]\n{HTTP}replica = {fits:?}\n");
    assert_eq!(shared_of(&text, "h").unwrap().unwrap().replica, fits);
}

#[test]
fn a_client_certificate_and_auth_come_in_pairs() {
    assert_eq!(
        problems(&format!("{HTTPS}etcd-cert = \"c.pem\"\n")),
        ["state.etcd-cert: needs etcd-key as well: give both or neither"]
    );
    assert_eq!(
        problems(&format!("{HTTPS}etcd-key = \"c.key\"\n")),
        ["state.etcd-key: needs etcd-cert as well: give both or neither"]
    );
    assert_eq!(
        problems(&format!("{HTTP}etcd-user = \"u\"\n")),
        ["state.etcd-user: needs etcd-password-file as well: give both or neither"]
    );
    assert_eq!(
        problems(&format!("{HTTP}etcd-password-file = \"pw\"\n")),
        ["state.etcd-password-file: needs etcd-user as well: give both or neither"]
    );
}

#[test]
fn empty_file_names_and_user_names_are_rejected_once() {
    let problems = problems(&format!(
        "{HTTPS}etcd-ca-file = \"\"\netcd-user = \"\"\netcd-password-file = \"pw\"\n"
    ));
    assert_eq!(
        problems,
        [
            "state.etcd-ca-file: must name a file (leave the key out for none)",
            "state.etcd-user: \"\" is not a user name",
        ]
    );
}

#[test]
fn tls_keys_with_http_endpoints_are_rejected_saying_why() {
    let problems = problems(&format!(
        "{HTTP}etcd-ca-file = \"ca.pem\"\netcd-cert = \"c.pem\"\netcd-key = \"c.key\"\n"
    ));
    let expected: Vec<String> = ["etcd-ca-file", "etcd-cert", "etcd-key"]
        .iter()
        .map(|k| format!("state.{k}: only applies with https:// endpoints in [state] etcd"))
        .collect();
    assert_eq!(problems, expected);
}

#[test]
fn the_whole_config_carries_the_shared_state_and_rejects_misspelt_keys() {
    let base = "[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n";
    let config = crate::config::parse(base).unwrap();
    assert_eq!(config.shared, None);
    let text = format!("{base}[state]\n{HTTP}replica = \"a\"\n[log]\nshared-keep = 200\n");
    let shared = crate::config::parse(&text).unwrap().shared.unwrap();
    assert_eq!((shared.replica.as_str(), shared.keep), ("a", 200));
    let problems =
        crate::config::parse(&format!("{base}[state]\netcd-endpoints = []\n")).unwrap_err();
    assert_eq!(problems[0].to_string(), "state.etcd-endpoints: unknown key");
}
