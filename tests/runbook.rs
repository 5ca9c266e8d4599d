//! `docs/RUNBOOK.md` is executable: every shell block runs, in order, with `bash -e -o
//! pipefail` against a real proxy with demo upstreams, and each block's own `verify` lines
//! must hold (a failing one fails the block).

mod common;

use std::time::Duration;

use common::{binary, pools_toml, TestProxy, Upstream};

/// The ```sh blocks of the runbook, in order, with the heading each belongs to.
fn blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("docs/RUNBOOK.md").unwrap();
    let (mut out, mut heading, mut block) = (Vec::new(), String::new(), None::<String>);
    for line in text.lines() {
        match (&mut block, line) {
            (None, l) if l.starts_with("## ") => heading = l[3..].to_string(),
            (None, "```sh") => block = Some(String::new()),
            (Some(b), "```") => {
                out.push((heading.clone(), std::mem::take(b)));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_block_does_what_it_says() {
    let blue = Upstream::start("blue").await;
    let (green_a, green_b) = (
        Upstream::start("green").await,
        Upstream::start("green").await,
    );
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("admin.tokens");
    std::fs::write(&token_file, "ops:first-token\n").unwrap();
    let plan = "[plans.default]\nsteps = [{ weight = 50, hold = \"1s\", min-requests = 20 }, \
                { weight = 100, hold = \"1s\", min-requests = 20 }]\n\
                [plans.default.analysis]\ndetect-ratio = 100\n";
    let rest = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"{}\"\n\n{plan}\n{}",
        token_file.display(),
        pools_toml(
            &[
                ("blue", &[blue.addr]),
                ("green", &[green_a.addr, green_b.addr])
            ],
            "blue = 100\ngreen = 0"
        )
    );
    let mut proxy = TestProxy::start("pool-header = \"x-switchback-pool\"", &rest).await;
    let new_pid_file = tokens.path().join("new.pid");
    let blocks = blocks();
    assert_eq!(blocks.len(), 9, "one block per section");
    for (heading, script) in &blocks {
        let mut bash = tokio::process::Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", script])
            .env("SB", binary())
            .env("SWITCHBACK_ADMIN", format!("http://{}", proxy.admin))
            .env("SWITCHBACK_TOKEN_FILE", &token_file)
            .env("PROXY", format!("http://{}", proxy.addr))
            .env("CONFIG", &proxy.config_path)
            .env("PID", proxy.pid().to_string())
            .env("NEW_PID_FILE", &new_pid_file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = bash.stdout.take().unwrap();
        let mut stderr = bash.stderr.take().unwrap();
        let output = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut out, mut err) = (String::new(), String::new());
            let _ = stdout.read_to_string(&mut out).await;
            let _ = stderr.read_to_string(&mut err).await;
            (out, err)
        });
        // Reap the old proxy as soon as it exits (the upgrade block waits for that).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            tokio::select! {
                status = bash.wait() => break status.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    let _ = proxy.wait_exit(Duration::from_millis(1)).await;
                    assert!(tokio::time::Instant::now() < deadline, "{heading}: still running");
                }
            }
        };
        // A process the block left running may hold the pipes: do not wait for it.
        let (out, err) = tokio::time::timeout(Duration::from_secs(5), output)
            .await
            .map_or_else(|_| Default::default(), Result::unwrap);
        assert!(
            status.success(),
            "runbook section {heading:?} failed:\n{script}\n--- stdout\n{out}\n--- stderr\n{err}\n--- proxy\n{}",
            proxy.stderr()
        );
    }
    // The upgrade block left a new process running: stop it.
    let pid = std::fs::read_to_string(&new_pid_file).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status();
}
