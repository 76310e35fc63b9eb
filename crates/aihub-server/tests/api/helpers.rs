//! `spawn_app()` and friends: start the application exactly as `aihub serve` does, on a free
//! port, against a fresh database; a client; and a capture of every log line for secret scans.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, Once};

use aihub_core::config::Config;
use aihub_server::Application;
use aihub_server::state::AppState;
use aihub_store::BackendKind;
use aihub_store::testing::TestDb;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// Generates one test per backend for each listed `async fn name(kind: BackendKind)`.
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(aihub_store::BackendKind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(aihub_pg), ignore = "set AIHUB_TEST_DATABASE_URL to run PostgreSQL tests")]
                async fn $name() {
                    super::$name(aihub_store::BackendKind::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use api_tests;

/// Every log line written by any test in this binary.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INIT_LOGS: Once = Once::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    INIT_LOGS.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,reqwest=info")
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

/// Everything logged so far, as text.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    server: tokio::task::JoinHandle<()>,
    /// Starts the shutdown that SIGTERM starts in the binary.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    db: TestDb,
    /// Journal and secrets directories of this app.
    pub dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(kind: BackendKind) -> TestApp {
    spawn_app_with(kind, |_| {}).await
}

/// Starts the app with a configuration adjusted by `tweak`.
pub async fn spawn_app_with(kind: BackendKind, tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database = db.config.clone();
    config.gateway.last_used_flush_secs = 1;
    config.gateway.secrets_dir = dir.path().join("secrets");
    config.usage.journal_dir = dir.path().join("journal");
    config.usage.load_interval_ms = 25;
    // Tests that are not about plans must not be held to the free plan's limits.
    config.limits.default_plan = None;
    tweak(&mut config);
    let app = Application::build(config).await.expect("build app");
    let addr = app.local_addr().unwrap();
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state,
        server,
        stop: Some(stop),
        db,
        dir,
    }
}

/// A registered, signed-in user.
pub struct Signed {
    pub token: String,
    pub user_id: String,
    pub org_id: String,
    pub password: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// Shuts the server down as SIGTERM does and waits until it has stopped: the database
    /// pools are closed then, so read what it left with [`TestApp::reopen_store`].
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await.unwrap();
    }

    /// A new connection to this app's database.
    pub async fn reopen_store(&self) -> aihub_store::Store {
        aihub_store::Store::connect(&self.db.config).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.req(Method::GET, path, Some(token))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.req(Method::POST, path, Some(token))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.req(Method::PATCH, path, Some(token))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.req(Method::DELETE, path, Some(token))
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Registers and signs in a new user.
    pub async fn signup(&self, email: &str) -> Signed {
        let r = self.register(email, PASSWORD).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let body: Value = r.json().await.unwrap();
        let token = self.token(email, PASSWORD).await;
        Signed {
            token,
            user_id: body["user"]["id"].as_str().unwrap().to_owned(),
            org_id: body["org"]["id"].as_str().unwrap().to_owned(),
            password: PASSWORD.to_owned(),
        }
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let r = self.login(email, password).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a key in the user's personal org; returns (key id, secret).
    pub async fn create_key(&self, who: &Signed, body: Value) -> (String, String) {
        let r = self
            .post(
                &format!("/api/v1/orgs/{}/keys", who.org_id),
                &who.token,
                body,
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    }

    /// `GET /v1/models` with an API key; the status tells whether the key works.
    pub async fn models_status(&self, key: &str) -> StatusCode {
        self.req(Method::GET, "/v1/models", Some(key))
            .send()
            .await
            .unwrap()
            .status()
    }
}

impl TestApp {
    /// The usage record of `request_id`, once the loader has moved it into the database.
    pub async fn usage_record(&self, request_id: &str) -> aihub_store::UsageRecord {
        let id = uuid::Uuid::parse_str(request_id).unwrap();
        for _ in 0..200 {
            if let Some(r) = self.state.services.store.usage_record(id).await.unwrap() {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no usage record for {request_id} after 5 s");
    }

    /// Signs up a user and gives them a key (optionally limited to `models`).
    pub async fn user_with_key(&self, email: &str, models: Option<&[&str]>) -> (Signed, String) {
        let who = self.signup(email).await;
        let body = match models {
            Some(m) => json!({"name": "k", "models": m}),
            None => json!({"name": "k"}),
        };
        let (_, key) = self.create_key(&who, body).await;
        (who, key)
    }

    /// Signs in a platform admin (created through the accounts service, as the CLI does).
    pub async fn platform_admin(&self) -> String {
        self.state
            .services
            .accounts
            .create_user(
                aihub_service::accounts::Registration {
                    email: "root@example.com".into(),
                    password: secrecy::SecretString::from(PASSWORD.to_owned()),
                    name: Some("Operator".into()),
                },
                true,
            )
            .await
            .unwrap();
        self.token("root@example.com", PASSWORD).await
    }

    /// POSTs an OpenAI-style body to a `/v1` path with an API key.
    pub async fn v1(&self, path: &str, key: &str, body: Value) -> Response {
        self.req(Method::POST, path, Some(key))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// The `x-request-id` of a response.
pub fn request_id(r: &Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// The `error.code` of an API error body.
pub async fn error_code(r: Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}
