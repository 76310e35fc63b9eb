//! The official `openai` Python package against the gateway: chat (streaming and not),
//! embeddings, completions, models and errors all parse; the requests it made are metered.
//! Runs where `AIHUB_TEST_PYTHON` names a Python with `openai` installed (`.ci/run` sets it up).

use aihub_store::BackendKind;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(aihub_python),
    ignore = "set AIHUB_TEST_PYTHON to a Python with the openai package"
)]
async fn the_official_openai_sdk_works() {
    let app = spawn_app(BackendKind::Sqlite).await;
    let (who, key) = app.user_with_key("sdk@example.com", None).await;
    let (limited_id, limited) = app
        .create_key(&who, serde_json::json!({"name": "limited"}))
        .await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/limits", who.org_id),
            &who.token,
            serde_json::json!({"scope_type": "key", "scope_id": limited_id, "rpm": 1}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let python = std::env::var("AIHUB_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_sdk.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env("OPENAI_BASE_URL", app.url("/v1"))
        .env("OPENAI_API_KEY", &key)
        .env("OPENAI_LIMITED_KEY", &limited)
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    for (name, id) in report["ids"].as_object().unwrap() {
        let rec = app.usage_record(id.as_str().unwrap()).await;
        match name.as_str() {
            "chat" => assert_eq!((rec.completion_tokens, rec.streamed), (5, false)),
            "stream" => assert_eq!((rec.completion_tokens, rec.streamed), (4, true)),
            "embeddings" => assert_eq!(rec.endpoint, "embeddings"),
            "error" => assert_eq!(
                (rec.status, rec.error_code.as_deref()),
                (404, Some("model_not_found"))
            ),
            "limited" => assert_eq!(
                (rec.status, rec.error_code.as_deref()),
                (429, Some("rpm_limit_exceeded"))
            ),
            other => panic!("unexpected {other}"),
        }
    }
}
