//! `switchback check` and `switchback serve` start-up, through the real binary.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{binary, write_file};

fn check(path: &std::path::Path) -> Output {
    run("check", path)
}

/// `switchback <command> --config <path>`, to completion.
fn run(command: &str, path: &std::path::Path) -> Output {
    Command::new(binary())
        .args([command, "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn the_annotated_reference_config_is_valid() {
    let out = check("config/switchback.toml".as_ref());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "ok: 2 pools, 3 backends (blue: 2, green: 1); split blue=90 green=10; listen 127.0.0.1:8080"
    );
}

/// Each fixture's first line is `# expect: <text the error output must contain>`.
#[test]
fn every_invalid_fixture_is_rejected_with_its_problem_named() {
    let mut checked = 0;
    for entry in std::fs::read_dir("tests/fixtures/invalid").unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let first_line = String::from_utf8_lossy(&bytes)
            .lines()
            .next()
            .unwrap()
            .to_string();
        let expected = first_line
            .strip_prefix("# expect: ")
            .expect("fixture starts with # expect:");

        let out = check(&path);

        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} should be rejected",
            path.display()
        );
        assert!(
            stderr.contains(expected),
            "{}: wanted {expected:?} in:\n{stderr}",
            path.display()
        );
        assert!(!stderr.contains("Error {"), "no Debug dumps: {stderr}");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} fixtures");
}

#[test]
fn missing_oversized_and_unreadable_files_are_rejected_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let huge = write_file(dir.path(), "huge.toml", &vec![b'#'; 1024 * 1024 + 1]);
    let cases = [
        (
            dir.path().join("absent.toml"),
            "the config file does not exist",
        ),
        (huge, "the limit is 1048576 bytes"),
        (dir.path().to_path_buf(), "cannot read the config file"),
    ];
    for (path, expected) in cases {
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr.contains(expected), "wanted {expected:?} in {stderr}");
    }
}

#[test]
fn serve_with_an_invalid_config_exits_nonzero_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 50\n"
    );
    let path = write_file(dir.path(), "bad.toml", text.as_bytes());

    let out = run("serve", &path);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("split: the percentages sum to 50"),
        "{stderr}"
    );
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "nothing was bound"
    );
}

#[test]
fn serve_on_a_taken_port_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[proxy]\nlisten = [\"{addr}\"]\n[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n");
    let path = write_file(dir.path(), "taken.toml", text.as_bytes());

    let started = Instant::now();
    let out = run("serve", &path);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a start-up failure, not an invalid config"
    );
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn version_names_the_commit_and_completions_and_the_config_env_work() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (name_and_version, commit) = version.split_once(" (").unwrap();
    assert_eq!(
        name_and_version,
        format!("switchback {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(commit.ends_with(')') && commit.len() > 1, "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("switchback")
        );
    }
    let out = Command::new(binary())
        .arg("check")
        .env("SWITCHBACK_CONFIG", "config/switchback.toml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage = Command::new(binary())
        .args(["check", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn the_process_log_can_be_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = format!("[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n");
    let path = write_file(dir.path(), "json.toml", text.as_bytes());
    let log_path = dir.path().join("stderr.log");
    let mut child = Command::new(binary())
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let line = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("switchback serving")) {
            break line.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no start line:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let entry: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(entry["level"], "INFO");
    assert_eq!(entry["fields"]["message"], "switchback serving");
}

#[test]
fn check_json_and_what_serve_needs_beyond_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["check", "--json", "--config", "config/switchback.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["summary"].as_str().unwrap().starts_with("ok: 2 pools"));

    // An unreadable admin token file and an unwritable log directory: named, exit 1.
    let base = "[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n";
    let missing = format!(
        "[admin]\ntoken-file = \"{}/nope.tokens\"\n{base}",
        dir.path().display()
    );
    let path = write_file(dir.path(), "tokens.toml", missing.as_bytes());
    let out = Command::new(binary())
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("admin.token-file:"),
        "{v}"
    );
    assert_eq!(
        run("serve", &path).status.code(),
        Some(3),
        "serve refuses it too"
    );
    let blocker = write_file(dir.path(), "a-file", b"");
    let unwritable = format!(
        "[log]\ndeployments = \"{}/log.jsonl\"\n{base}",
        blocker.display()
    );
    let path = write_file(dir.path(), "log.toml", unwritable.as_bytes());
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.deployments: cannot write"));
    let out = run("serve", &path);
    assert_eq!(
        out.status.code(),
        Some(3),
        "serve refuses what check refuses"
    );

    // A token file others can read is a warning, not a failure.
    let tokens = write_file(dir.path(), "open.tokens", b"ops:secret\n");
    let open = format!("[admin]\ntoken-file = \"{}\"\n{base}", tokens.display());
    let path = write_file(dir.path(), "open.toml", open.as_bytes());
    let out = Command::new(binary())
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["warnings"][0].as_str().unwrap().contains("chmod 600"),
        "{v}"
    );
}

#[test]
fn check_says_how_much_traffic_each_plan_needs_to_decide_its_steps_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\
                [pools.blue]\nbackends = [\"127.0.0.1:9001\"]\n\
                [pools.green]\nbackends = [\"127.0.0.1:9002\"]\n\
                [split]\nblue = 100\ngreen = 0\n\
                [plans.careful]\nmax-step-time = \"30m\"\nsteps = [\n\
                { weight = 10, hold = \"5m\" },\n{ weight = 50, hold = \"5m\" },\n\
                { weight = 100, hold = \"5m\" },\n]\n\
                [plans.capped]\nsteps = [{ weight = 100 }]\n\
                [plans.capped.analysis]\nmax-error-rate = 0.001\n";
    let path = write_file(dir.path(), "switchback.toml", text.as_bytes());
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 10 % of 6.5 req/s gives the ~580 target requests a 0.5 % service needs in 15 minutes.
    assert!(
        stdout.contains(
            "plan careful: each step decides within half of max-step-time 30m at 6.5 req/s or more in total (at 0.5 % errors)"
        ),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: plan capped: its steps cannot pass the advance gate at 0.5 % errors"
        ),
        "{stderr}"
    );
}
