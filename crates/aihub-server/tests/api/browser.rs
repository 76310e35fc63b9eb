//! The dashboard in a real browser: headless Chromium driven over WebDriver walks a new user
//! through sign-up, a key, a `/v1` call against the mock provider, the usage page and the
//! overview, an invitation accepted by a second user, and the language switch. A screenshot of
//! every page is written as a test artifact (`AIHUB_TEST_ARTIFACTS`, else the test target's
//! temporary directory under `browser/`).
//!
//! Needs `AIHUB_TEST_CHROMEDRIVER` (Debian's chromium and chromium-driver, installed by
//! `.ci/run`); without it the tests are compiled as ignored and reported as skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::PASSWORD;
use crate::invitations::{app_with_sink, mail, token_in};
use crate::surface::dashboard_routes;
use crate::webdriver::Driver;

/// The `value` of the first input matching `css` on the browser's page.
async fn field_value(b: &Driver, css: &str) -> String {
    b.find(css).await.attribute("value").await
}

/// A page on another site (`localhost` instead of `127.0.0.1`, another port) that, once loaded,
/// sends a text/plain JSON POST to the API with the browser's credentials and then submits a
/// form to the dashboard: what a malicious site can do to a signed-in user.
struct EvilSite {
    url: String,
    visited: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for EvilSite {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl EvilSite {
    async fn start(target: &str, org: &str) -> EvilSite {
        let html = format!(
            r#"<!doctype html><html><body>
<form id="f" method="post" action="{target}/keys">
<input name="csrf" value="guessed"><input name="org" value="{org}"><input name="name" value="forged form">
</form>
<script>
fetch("{target}/api/v1/orgs/{org}/keys", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{name: "forged json"}})}})
  .catch(() => null)
  .finally(() => document.getElementById("f").submit());
</script></body></html>"#
        );
        let visited = Arc::new(AtomicBool::new(false));
        let seen = visited.clone();
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                seen.store(true, Ordering::SeqCst);
                let html = html.clone();
                async move { axum::response::Html(html) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        EvilSite {
            url: format!("http://localhost:{port}/"),
            visited,
            server,
        }
    }

    fn was_visited(&self) -> bool {
        self.visited.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(aihub_browser),
    ignore = "set AIHUB_TEST_CHROMEDRIVER to run browser tests"
)]
async fn a_new_user_walks_through_the_dashboard_sqlite() {
    walk(BackendKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(aihub_browser, aihub_pg)),
    ignore = "set AIHUB_TEST_CHROMEDRIVER and AIHUB_TEST_DATABASE_URL to run this browser test"
)]
async fn a_new_user_walks_through_the_dashboard_postgres() {
    walk(BackendKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(aihub_browser),
    ignore = "set AIHUB_TEST_CHROMEDRIVER to run browser tests"
)]
async fn every_page_renders_in_both_languages() {
    let (app, _sink) = app_with_sink(BackendKind::Sqlite, |_| {}).await;
    let origin = app.url("");
    let root = app.platform_admin().await;
    // Data on the pages, including a name that would run as script if it were not escaped.
    let orgs: Value = app.get("/api/v1/orgs", &root).await.json().await.unwrap();
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let hostile = "<script>document.title='pwned'</script>";
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/keys"),
            &root,
            json!({"name": hostile}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let secret = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .v1(
            "/v1/chat/completions",
            &secret,
            json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let mut b = Driver::start("every-page").await;
    b.goto(&app.url("/login")).await;
    b.find("#email").await.fill("root@example.com").await;
    b.find("#password").await.fill(PASSWORD).await;
    b.find("#sign-in").await.click().await;
    b.find("#today-requests").await;

    let pages: Vec<String> = dashboard_routes()
        .into_iter()
        .filter(|r| r.method == "GET" && r.placeholders().is_empty())
        .map(|r| r.path)
        .filter(|p| !NOT_A_PAGE.iter().any(|skip| p.starts_with(skip)))
        .filter(|p| !p.ends_with(".csv") && !p.contains("export"))
        .collect();
    assert!(pages.len() >= 15, "pages: {pages:?}");
    for lang in ["en", "zh-CN"] {
        b.goto(&app.url(&format!("/lang/{lang}?next=/"))).await;
        for page in &pages {
            b.goto(&format!("{origin}{page}")).await;
            assert!(
                !b.has("#error-code").await,
                "{page} in {lang}: {}",
                b.text("#error").await
            );
            assert_eq!(b.find("html").await.attribute("lang").await, lang, "{page}");
            assert_ne!(b.title().await, "pwned", "{page}: a name ran as script");
            let text = b.text("body").await;
            if lang == "zh-CN" {
                let nav = b.text("nav.main").await;
                assert!(
                    nav.lines().all(has_chinese),
                    "{page}: untranslated navigation: {nav}"
                );
                assert!(has_chinese(&text), "{page} has no Chinese text");
            }
            let name = page.trim_matches('/').replace('/', "-");
            let name = if name.is_empty() { "overview" } else { &name };
            b.screenshot(&format!("{lang}-{name}")).await;
        }
    }
    println!("{} pages rendered in both languages", pages.len());
}

/// Routes that are not pages to look at: sign-in forms (the user is signed in), assets,
/// switchers and actions reached by links, and the invitation page (needs a token).
const NOT_A_PAGE: &[&str] = &[
    "/assets/",
    "/lang/",
    "/login",
    "/signup",
    "/logout",
    "/invitations/",
];

fn has_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

async fn walk(kind: BackendKind) {
    let (app, sink) = app_with_sink(kind, |_| {}).await;
    let origin = app.url("");
    let mut b = Driver::start(&format!("walk-{kind:?}").to_lowercase()).await;

    // Sign up and sign in through the forms.
    b.goto(&app.url("/")).await;
    b.wait_for_path(&origin, "/login").await;
    b.find("#to-signup").await.click().await;
    b.wait_for_path(&origin, "/signup").await;
    b.find("#email").await.fill("ada@example.com").await;
    b.find("#name").await.fill("Ada").await;
    b.find("#password").await.fill(PASSWORD).await;
    b.screenshot("signup").await;
    b.find("#sign-up").await.click().await;
    b.wait_for_path(&origin, "/login?created=1").await;
    assert!(b.has("#notice").await);
    b.find("#email").await.fill("ada@example.com").await;
    b.find("#password").await.fill(PASSWORD).await;
    b.screenshot("login").await;
    b.find("#sign-in").await.click().await;
    b.find("#today-requests").await;
    assert_eq!(b.text("#user-name").await, "Ada");
    assert_eq!(b.text("#today-requests").await, "0");
    b.screenshot("overview-empty").await;

    // Create a key; its secret is shown once.
    b.find("#nav-keys").await.click().await;
    b.find("#key-name").await.fill("browser key").await;
    b.screenshot("keys-empty").await;
    b.find("#create-key").await.click().await;
    let secret = b.text("#new-key-secret").await;
    assert!(secret.starts_with("sk-aihub-"), "{secret}");
    assert!(b.has("#secret-warning").await && b.has("#copy-secret").await);
    b.screenshot("key-created").await;

    // Another site tries to act with Ada's browser: a form posted to the dashboard and a JSON
    // POST to the API (as text/plain, which needs no CORS preflight). Neither creates a key.
    b.find("#back-to-keys").await.click().await;
    let org = field_value(&b, "#create-key-form input[name=org]").await;
    let evil = EvilSite::start(&origin, &org).await;
    b.goto(&evil.url).await;
    b.wait_for_path(&origin, "/keys").await;
    assert_eq!(b.text("#error-code").await, "csrf_failed");
    b.screenshot("cross-site-post-refused").await;
    b.find("#back-home").await.click().await;
    let token = app.token("ada@example.com", PASSWORD).await;
    let keys: Value = app
        .get(&format!("/api/v1/orgs/{org}/keys"), &token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["browser key"], "the other site created nothing");
    assert!(evil.was_visited(), "the other site's page was loaded");

    // The application calls the gateway with it.
    let r = app
        .v1(
            "/v1/chat/completions",
            &secret,
            json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The overview counts it once the usage is loaded (the journal is read every 25 ms here).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.find("#nav-overview").await.click().await;
        if b.text("#today-requests").await == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call never reached the overview"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#month-requests").await, "1");
    assert_ne!(b.text("#today-tokens").await, "0");
    b.screenshot("overview-after-call").await;
    b.find("#nav-keys").await.click().await;
    b.find("#keys").await;
    b.screenshot("keys").await;

    // The usage page shows the call: in the totals (from the daily rollups) and in the
    // range's requests.
    b.find("#nav-usage").await.click().await;
    assert_eq!(b.text("#usage-total-requests").await, "1");
    let requests = b.text("#usage-requests").await;
    assert!(requests.contains("mock-chat"), "{requests}");
    assert!(b.has("#usage-csv").await);
    b.screenshot("usage").await;

    // Invite a second user as an Admin from the organization's pages.
    b.find("#nav-org").await.click().await;
    assert_eq!(b.text("#org-role").await, "Owner");
    b.screenshot("org-settings").await;
    b.find("#org-nav-invitations").await.click().await;
    b.find("#invite-email").await.fill("bob@example.com").await;
    b.find("#invite-role option[value=admin]")
        .await
        .click()
        .await;
    b.find("#invite-send").await.click().await;
    assert!(b.text("#notice").await.contains("e-mail"));
    assert!(b.text("#invitations").await.contains("bob@example.com"));
    b.screenshot("invitation-sent").await;
    let token = token_in(&mail(&sink, 1).await);
    b.find("#sign-out").await.click().await;
    b.wait_for_path(&origin, "/login").await;

    // Bob signs up, opens the link from the e-mail, accepts, and sees the organization with
    // the role he was invited to.
    b.goto(&app.url("/signup")).await;
    b.find("#email").await.fill("bob@example.com").await;
    b.find("#name").await.fill("Bob").await;
    b.find("#password").await.fill(PASSWORD).await;
    b.find("#sign-up").await.click().await;
    b.wait_for_path(&origin, "/login?created=1").await;
    b.find("#email").await.fill("bob@example.com").await;
    b.find("#password").await.fill(PASSWORD).await;
    b.find("#sign-in").await.click().await;
    b.find("#today-requests").await;
    b.goto(&app.url(&format!("/invitations/accept?token={token}")))
        .await;
    b.find("#accept-invitation").await;
    b.screenshot("invitation-accept").await;
    b.find("#accept-invitation").await.click().await;
    b.wait_for_path(&origin, &format!("/?org={org}")).await;
    assert_eq!(b.text("#org-name").await, "Ada's organization");
    b.find("#nav-org").await.click().await;
    assert_eq!(b.text("#org-role").await, "Admin");
    assert!(b.text("#org").await.contains("Ada's organization"));
    b.screenshot("org-as-invitee").await;
    b.find("#org-nav-members").await.click().await;
    let members = b.text("#members").await;
    assert!(members.contains("ada@example.com") && members.contains("bob@example.com"));
    b.screenshot("members").await;

    // Chinese and back: the choice is remembered across pages.
    b.find("#lang-zh-CN").await.click().await;
    b.find("#members").await;
    assert_eq!(b.find("html").await.attribute("lang").await, "zh-CN");
    assert_eq!(b.text("#nav-overview").await, "概览");
    b.screenshot("members-zh").await;
    b.find("#nav-overview").await.click().await;
    assert_eq!(b.text("#nav-org").await, "组织");
    b.screenshot("overview-zh").await;
    b.find("#lang-en").await.click().await;
    b.find("#today-requests").await;
    assert_eq!(b.find("html").await.attribute("lang").await, "en");
    assert_eq!(b.text("#nav-overview").await, "Overview");
    b.screenshot("overview-en-again").await;
}
