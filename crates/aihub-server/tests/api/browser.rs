//! The dashboard in a real browser: headless Chromium driven over WebDriver walks a new user
//! through sign-up, a key, a `/v1` call against the mock provider, the usage page and the
//! overview, an invitation accepted by a second user, and the language switch. A screenshot of
//! every page is written as a test artifact (`AIHUB_TEST_ARTIFACTS`, else the test target's
//! temporary directory under `browser/`).
//!
//! Needs `AIHUB_TEST_CHROMEDRIVER` (Debian's chromium and chromium-driver, installed by
//! `.ci/run`); without it the tests are compiled as ignored and reported as skipped.

use std::time::{Duration, Instant};

use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::PASSWORD;
use crate::invitations::app_with_sink;
use crate::webdriver::Driver;

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

async fn walk(kind: BackendKind) {
    let (app, _sink) = app_with_sink(kind, |_| {}).await;
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
}
