//! Backend host names are re-resolved (SIGHUP, `[proxy] dns-refresh`) and their state is kept
//! by name; a reload that removes pools and backends leaves no metric series behind.

mod common;

use std::time::Duration;

use common::{get, poll_until, TestProxy, Upstream, DEADLINE};

/// A name in `/etc/hosts` for the life of the test; removed on drop.
struct HostsEntry {
    name: String,
}

impl HostsEntry {
    fn new(name: &str, ip: &str) -> HostsEntry {
        let entry = HostsEntry { name: name.into() };
        entry.point_to(ip);
        entry
    }

    /// Rewrites the line in place (`/etc/hosts` may be a bind mount that cannot be renamed),
    /// one test at a time so no test's line is lost.
    fn point_to(&self, ip: &str) {
        static HOSTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.ends_with(&format!(" {}", self.name)))
            .map(str::to_string)
            .collect();
        if !ip.is_empty() {
            lines.push(format!("{ip} {}", self.name));
        }
        std::fs::write("/etc/hosts", lines.join("\n") + "\n").unwrap();
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        self.point_to("");
    }
}

#[tokio::test]
async fn a_backend_name_is_re_resolved_and_keeps_its_drain_across_the_move() {
    if std::fs::metadata("/etc/hosts")
        .map(|m| m.permissions().readonly())
        .unwrap_or(true)
    {
        eprintln!("skipped: /etc/hosts is not writable here");
        return;
    }
    let first = Upstream::start_on("first", "127.0.0.1:0".parse().unwrap()).await;
    let port = first.addr.port();
    let second = Upstream::start_on("second", format!("127.0.0.2:{port}").parse().unwrap()).await;
    let name = format!("sb-dns-{}.test", std::process::id());
    let hosts = HostsEntry::new(&name, "127.0.0.1");
    let backend = format!("{name}:{port}");
    let rest = format!("[pools.blue]\nbackends = [\"{backend}\"]\n[split]\nblue = 100\n");
    let proxy = TestProxy::start("dns-refresh = \"200ms\"", &rest).await;
    assert_eq!(get(proxy.addr, "/").await.text(), "first");

    let drain = format!("/backends/blue/{backend}/drain");
    assert_eq!(proxy.admin("POST", &drain, "").await.status, 200);
    hosts.point_to("127.0.0.2");
    let resolved = |s: serde_json::Value| s["pools"]["blue"]["backends"][0]["resolved"].clone();
    poll_until("the name to be re-resolved", DEADLINE, || async {
        resolved(proxy.status().await) == format!("127.0.0.2:{port}")
    })
    .await;
    let status = proxy.status().await;
    assert_eq!(
        status["pools"]["blue"]["backends"][0]["drained"], true,
        "{status}"
    );
    assert_eq!(
        get(proxy.addr, "/").await.status,
        503,
        "still drained after the move"
    );
    let undrain = format!("/backends/blue/{backend}/undrain");
    assert_eq!(proxy.admin("POST", &undrain, "").await.status, 200);
    assert_eq!(get(proxy.addr, "/").await.text(), "second");
    let history = proxy.history().await;
    assert!(history.iter().any(
        |e| e["actor"] == "dns" && e["message"].as_str().unwrap_or("").contains("re-resolved")
    ));
    drop(second);
}

#[tokio::test]
async fn sighup_re_resolves_names_even_when_the_file_is_unchanged() {
    if std::fs::metadata("/etc/hosts")
        .map(|m| m.permissions().readonly())
        .unwrap_or(true)
    {
        return;
    }
    let first = Upstream::start_on("first", "127.0.0.1:0".parse().unwrap()).await;
    let port = first.addr.port();
    let _second = Upstream::start_on("second", format!("127.0.0.2:{port}").parse().unwrap()).await;
    let name = format!("sb-hup-{}.test", std::process::id());
    let hosts = HostsEntry::new(&name, "127.0.0.1");
    let rest = format!("[pools.blue]\nbackends = [\"{name}:{port}\"]\n[split]\nblue = 100\n");
    let proxy = TestProxy::start("dns-refresh = \"0s\"", &rest).await;
    assert_eq!(get(proxy.addr, "/").await.text(), "first");
    hosts.point_to("127.0.0.2");
    proxy.signal(libc::SIGHUP);
    poll_until("SIGHUP to re-resolve", DEADLINE, || async {
        get(proxy.addr, "/").await.text() == "second"
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_removes_pools_and_backends_drops_their_series() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let pools = |extra: bool| {
        let mut t = format!("[pools.blue]\nbackends = [\"{}\"]\n", ups[0].addr);
        if extra {
            t += &format!(
                "[pools.grey]\nbackends = [\"{}\", \"{}\"]\n",
                ups[1].addr, ups[2].addr
            );
            t += "[split]\nblue = 50\ngrey = 50\n";
        } else {
            t += "[split]\nblue = 100\n";
        }
        t
    };
    let proxy = TestProxy::start("", &pools(true)).await;
    for _ in 0..20 {
        get(proxy.addr, "/").await;
    }
    let scrape = || async { proxy.admin("GET", "/metrics", "").await.text() };
    assert!(scrape().await.contains("pool=\"grey\""));
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let start = text.find("[pools.blue]").unwrap();
    std::fs::write(
        &proxy.config_path,
        format!("{}{}", &text[..start], pools(false)),
    )
    .unwrap();
    poll_until("grey's series to go", DEADLINE, || async {
        let m = scrape().await;
        !m.contains("pool=\"grey\"") && !m.contains(&ups[1].addr.to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = scrape().await;
    assert!(
        !m.contains("pool=\"grey\""),
        "a sampled gauge brought grey back"
    );
}
