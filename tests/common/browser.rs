//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! which `make deps` installs): a small W3C WebDriver client over the harness's own HTTP
//! client. The protocol is a handful of JSON calls; a crate for it (fantoccini, thirtyfour)
//! would bring its own HTTP stack for what is here in ~200 lines.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::{free_port, Client, DEADLINE};

/// The WebDriver element key (W3C).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser: a `chromedriver` with one session. Dropping it ends both.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

/// What the browser reported while the page ran: console messages at level SEVERE, which
/// include uncaught exceptions, failed loads and Content-Security-Policy violations.
pub fn severe(logs: &[Value]) -> Vec<String> {
    logs.iter()
        .filter(|l| l["level"] == "SEVERE")
        .map(|l| l["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

impl Browser {
    /// Starts headless Chromium with a window of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (run `make deps`)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let size = format!("--window-size={width},{height}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run", size],
            },
        }}});
        let created = browser.call("POST", "/session", capabilities).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; panics with the driver's message on an error.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.try_call(method, path, body).await;
        assert!(status < 300, "WebDriver {method} {path}: {status} {value}");
        value
    }

    /// One WebDriver command: its status and `value`.
    async fn try_call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = match method {
            "GET" | "DELETE" => Bytes::new(),
            _ => Bytes::from(body.to_string()),
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body).boxed())
            .unwrap();
        // Starting Chromium can take a while on a busy machine.
        let reply = tokio::time::timeout(
            Duration::from_secs(60),
            Client::connect(self.addr).await.send(request),
        )
        .await
        .expect("WebDriver answered");
        let parsed: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, parsed["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.call("POST", &self.at("/execute/sync"), body).await
    }

    /// Runs `script` until it returns something truthy (not `null`, `false`, `""` or `0`),
    /// for up to [`DEADLINE`]; that value. A script that throws (the page is not there yet)
    /// counts as not yet.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        self.until_within(what, DEADLINE, script).await
    }

    /// [`Browser::until`] within `within`.
    pub async fn until_within(&self, what: &str, within: Duration, script: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let body = json!({ "script": script, "args": [] });
            let (status, value) = self.try_call("POST", &self.at("/execute/sync"), body).await;
            let value = if status < 300 {
                value
            } else {
                json!({ "threw": value["message"] })
            };
            let truthy = status < 300
                && match &value {
                    Value::Null | Value::Bool(false) => false,
                    Value::String(s) => !s.is_empty(),
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    _ => true,
                };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last: {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';";
        let value = self.eval(script, json!([css])).await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Clicks the first element matching `css`, as a user would (WebDriver element click).
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let path = self.at(&format!("/element/{element}/click"));
        self.call("POST", &path, json!({})).await;
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        let path = self.at(&format!("/element/{element}/value"));
        self.call("POST", &path, json!({ "text": text })).await;
    }

    /// The WebDriver id of the first element matching `css`, waiting for it to exist.
    async fn find(&self, css: &str) -> String {
        let body = json!({ "using": "css selector", "value": css });
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, value) = self
                .try_call("POST", &self.at("/element"), body.clone())
                .await;
            if status < 300 {
                let id = value[ELEMENT].as_str();
                return id.unwrap_or_else(|| panic!("{css}: {value}")).to_string();
            }
            assert!(Instant::now() < deadline, "no element {css}: {value}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The browser's console log since the last call (Chromium's `goog:loggingPrefs`).
    pub async fn logs(&self) -> Vec<Value> {
        let value = self
            .call("POST", &self.at("/se/log"), json!({ "type": "browser" }))
            .await;
        value.as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the viewport at `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let value = self.call("GET", &self.at("/screenshot"), Value::Null).await;
        let png = base64_decode(value.as_str().expect("base64 PNG"));
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and the Chromium it started share its process group.
        let group = -(self.driver.id() as i32);
        let _ = Command::new("kill")
            .args(["-9", "--", &group.to_string()])
            .status();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (the screenshot's encoding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !b"=\r\n ".contains(c)).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
