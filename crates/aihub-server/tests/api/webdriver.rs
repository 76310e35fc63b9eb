//! A small W3C WebDriver client for the dashboard's browser tests: starts Debian's
//! `chromedriver` (path in `AIHUB_TEST_CHROMEDRIVER`) on a free port, opens one headless Chromium
//! session, and speaks the protocol's JSON over HTTP — navigate, find by CSS selector, click,
//! type, read text, and screenshots written as test artifacts.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a lookup waits for an element to appear (pages load after a click).
const WAIT: Duration = Duration::from_secs(10);

pub struct Driver {
    process: Child,
    http: reqwest::Client,
    session: String,
    artifacts: PathBuf,
    shots: usize,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ending the session closes Chromium; killing the driver reaps anything left.
        let _ = delete_blocking(&self.session);
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A DELETE without an async runtime (for `Drop`), over a plain TCP connection.
fn delete_blocking(url: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    Ok(())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    /// Starts chromedriver and a headless Chromium whose preferred language is English.
    /// Screenshots go to `AIHUB_TEST_ARTIFACTS` (else the test target's temporary directory),
    /// in a folder named after `test`.
    pub async fn start(test: &str) -> Driver {
        let driver = std::env::var("AIHUB_TEST_CHROMEDRIVER")
            .expect("AIHUB_TEST_CHROMEDRIVER names the chromedriver binary");
        let port = free_port();
        let process = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["value"]["ready"].as_bool()),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let binary =
            std::env::var("AIHUB_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=en-US"],
                "prefs": {"intl.accept_languages": "en-US,en"}
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        let root = std::env::var_os("AIHUB_TEST_ARTIFACTS").map_or_else(
            || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser"),
            PathBuf::from,
        );
        let artifacts = root.join(test);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).unwrap();
        Driver {
            process,
            http,
            session: format!("{base}/session/{session}"),
            artifacts,
            shots: 0,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The document's title.
    pub async fn title(&self) -> String {
        self.call(Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The first element matching the CSS selector, waiting up to [`WAIT`] for it.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self
                .http
                .post(format!("{}/element", self.session))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                let v: Value = r.json().await.unwrap();
                let id = v["value"][ELEMENT].as_str().unwrap().to_owned();
                return Element { driver: self, id };
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matching the selector is on the page now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        let v = self
            .call(
                Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array().is_some_and(|a| !a.is_empty())
    }

    /// The text of the element matching the selector.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await
    }

    /// Waits until the page's path (and query) starts with `prefix`; returns the whole URL.
    pub async fn wait_for_path(&self, origin: &str, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url
                .strip_prefix(origin)
                .is_some_and(|p| p.starts_with(prefix))
            {
                return url;
            }
            assert!(Instant::now() < deadline, "still on {url}, wanted {prefix}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport as `NN-name.png` in this test's artifact folder.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let data = self.call(Method::GET, "/screenshot", None).await;
        let png = STANDARD.decode(data.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        self.shots += 1;
        let path = self.artifacts.join(format!("{:02}-{name}.png", self.shots));
        std::fs::write(&path, png).unwrap();
        path
    }
}

pub struct Element<'a> {
    driver: &'a Driver,
    id: String,
}

impl Element<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/element/{}{tail}", self.id)
    }

    pub async fn click(&self) {
        self.driver
            .call(Method::POST, &self.path("/click"), Some(json!({})))
            .await;
    }

    /// Clears the field and types `text` into it.
    pub async fn fill(&self, text: &str) {
        self.driver
            .call(Method::POST, &self.path("/clear"), Some(json!({})))
            .await;
        self.driver
            .call(
                Method::POST,
                &self.path("/value"),
                Some(json!({"text": text})),
            )
            .await;
    }

    /// The element's property `name` (e.g. an input's current `value`).
    pub async fn attribute(&self, name: &str) -> String {
        self.driver
            .call(Method::GET, &self.path(&format!("/property/{name}")), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn text(&self) -> String {
        self.driver
            .call(Method::GET, &self.path("/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
}
