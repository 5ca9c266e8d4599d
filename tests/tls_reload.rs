//! Certificate reload on the TLS listeners, over real sockets: a renewal by rename, a
//! Kubernetes-style symlink swap, and files that do not read (rejected, the old certificate
//! still served).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tls::{self, front, get1 as get, served_names, Pki};
use common::{free_port, poll_until, pools_toml, TestProxy, Upstream, DEADLINE};

/// Replaces `name` in `dir` atomically (write beside, then rename).
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_handshakes_and_a_broken_one_is_rejected() {
    let pki = Pki::new("test CA");
    let first = pki.issue(&["a.test"], 30);
    let f = front("blue = 100\ngreen = 0", &[("a", &first)], "", "").await;
    let dir = f.proxy.dir.path().to_path_buf();

    // A connection opened before the change keeps working after it.
    let stream = tls::connect(
        f.tls,
        Some("a.test"),
        tls::client_config(None, &["http/1.1"]),
    )
    .await
    .unwrap();
    let mut before = tls::http1(stream).await;
    assert_eq!(get(&mut before, "/").await.0, 200);

    let renewed = pki.issue(&["a.test", "renewed.a.test"], 60);
    replace(&dir, "a.key", &renewed.key);
    replace(&dir, "a.pem", &renewed.cert);
    let took = poll_until(
        "the renewed certificate is served",
        Duration::from_secs(2),
        || async { served_names(f.tls, Some("a.test")).await.len() == 2 },
    )
    .await;
    eprintln!("renewed certificate served after {took:?}");
    assert_eq!(
        get(&mut before, "/").await.0,
        200,
        "the old connection still works"
    );

    // A file that does not parse: rejected, logged, the renewed certificate still served.
    replace(
        &dir,
        "a.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    poll_until("a rejected entry", DEADLINE, || async {
        f.proxy.history().await.iter().any(|e| {
            e["action"] == "rejected"
                && e["actor"] == "file"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("tls.certificates[0]")
        })
    })
    .await;
    assert_eq!(
        served_names(f.tls, Some("a.test")).await,
        ["a.test", "renewed.a.test"]
    );

    // A key that is not the certificate's: rejected the same way.
    let other = pki.issue(&["a.test", "third.a.test"], 60);
    replace(&dir, "a.pem", &other.cert);
    poll_until("a key mismatch is rejected", DEADLINE, || async {
        f.proxy.history().await.iter().any(|e| {
            e["action"] == "rejected"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("is not the private key of")
        })
    })
    .await;
    assert_eq!(
        served_names(f.tls, Some("a.test")).await,
        ["a.test", "renewed.a.test"]
    );
    assert!(
        f.proxy.stderr().contains("certificate rejected"),
        "{}",
        f.proxy.stderr()
    );
}

#[tokio::test]
async fn a_symlink_swap_of_the_certificate_directory_is_picked_up() {
    let pki = Pki::new("test CA");
    let (v1, v2) = (
        pki.issue(&["a.test"], 30),
        pki.issue(&["a.test", "v2.a.test"], 30),
    );
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let dir = tempfile::tempdir().unwrap();
    // Kubernetes' layout: ..data -> ..v1, and the files are links through ..data.
    for (version, issued) in [("..v1", &v1), ("..v2", &v2)] {
        std::fs::create_dir(dir.path().join(version)).unwrap();
        std::fs::write(dir.path().join(version).join("tls.crt"), &issued.cert).unwrap();
        std::fs::write(dir.path().join(version).join("tls.key"), &issued.key).unwrap();
    }
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", dir.path().join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", dir.path().join("tls.key")).unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pools = pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100\ngreen = 0",
    );
    let certs = dir.path().display();
    let rest = format!(
        "[tls]\nlisten = [\"{tls}\"]\ncertificates = [{{ cert = \"{certs}/tls.crt\", key = \"{certs}/tls.key\" }}]\n{pools}"
    );
    let proxy = TestProxy::start("", &rest).await;
    assert_eq!(served_names(tls, Some("a.test")).await, ["a.test"]);

    std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    poll_until(
        "the swapped certificate is served",
        Duration::from_secs(2),
        || async { served_names(tls, Some("a.test")).await.len() == 2 },
    )
    .await;
    drop(proxy);
}
