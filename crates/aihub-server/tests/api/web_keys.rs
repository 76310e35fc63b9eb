//! The dashboard's key page over real HTTP: editing a key, its rate limits and budget (with
//! the caps on a Member's own keys shown as form messages), rotation with the new secret shown
//! once and the old one refused by the gateway, the list's limit and budget columns, and
//! refusals for Viewers, other organizations and wrong tokens.

use aihub_core::Role;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{api_tests, spawn_app};
use crate::web_budgets::{api_list, join, shared_org, signed_in};
use crate::web_client::{Browser, field, location, secret_in, text_of};

api_tests!(
    a_key_is_edited_limited_budgeted_and_rotated,
    own_key_caps_show_as_form_messages,
    viewers_other_orgs_and_wrong_tokens_change_nothing,
);

/// Creates a key with the list's form; its id and secret.
async fn create_key(b: &Browser, org: &str, name: &str) -> (String, String) {
    let html = b.page(&format!("/keys?org={org}")).await;
    let csrf = field(&html, "csrf");
    let r = b
        .post("/keys", &[("csrf", &csrf), ("org", org), ("name", name)])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let secret = secret_in(&r.text().await.unwrap()).unwrap();
    let html = b.page(&format!("/keys?org={org}")).await;
    let marker = "id=\"key-open-";
    let start = html.find(marker).unwrap() + marker.len();
    (html[start..start + 36].to_owned(), secret)
}

fn chat() -> Value {
    json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]})
}

async fn a_key_is_edited_limited_budgeted_and_rotated(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;
    let (id, secret) = create_key(&b, &org, "ci").await;
    let html = b.page(&format!("/keys/{id}?org={org}")).await;
    assert_eq!(text_of(&html, "key-name-shown"), "ci");
    assert!(html.contains("id=\"key-rotate\""));
    let csrf = field(&html, "csrf");

    // Edit name, models and expiry.
    let r = b
        .post(
            &format!("/keys/{id}"),
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("name", "deploy"),
                ("models", "mock-chat, mock-embed"),
                ("expires", "2099-12-31"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/keys/{id}?org={org}&done=saved"));
    let key: Value = app
        .get(&format!("/api/v1/orgs/{org}/keys/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(key["name"], "deploy");
    assert_eq!(key["models"], json!(["mock-chat", "mock-embed"]));
    assert!(
        key["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2099-12-31T00:00:00")
    );

    // Set its limits, then replace them.
    for (rpm, tpm) in [("60", "10000"), ("30", "")] {
        let r = b
            .post(
                &format!("/keys/{id}/limits"),
                &[("csrf", &csrf), ("org", &org), ("rpm", rpm), ("tpm", tpm)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    let limits = api_list(&app, &token, &org, "limits").await;
    assert_eq!(limits.len(), 1, "replaced, not added");
    assert_eq!(limits[0]["scope_type"], "key");
    assert_eq!(limits[0]["scope_id"], id.as_str());
    assert_eq!(limits[0]["rpm"], 30);
    assert_eq!(limits[0]["tpm"], Value::Null);

    // Set its budget.
    let r = b
        .post(
            &format!("/keys/{id}/budget"),
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("amount", "5.25"),
                ("currency", "USD"),
                ("period", "daily"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let budgets = api_list(&app, &token, &org, "budgets").await;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0]["scope_type"], "key");
    assert_eq!(budgets[0]["scope_id"], id.as_str());
    assert_eq!(budgets[0]["amount_micros"], 5_250_000);
    assert_eq!(budgets[0]["period"], "daily");

    // The list shows both in the key's row.
    let html = b.page(&format!("/keys?org={org}")).await;
    assert!(html.contains(&format!("id=\"key-row-{id}\"")));
    assert_eq!(text_of(&html, &format!("key-limits-{id}")), "30 RPM");
    assert_eq!(
        text_of(&html, &format!("key-budget-{id}")),
        "0 / 5.25 USD · Daily"
    );
    assert_eq!(text_of(&html, &format!("key-last-used-{id}")), "Never");
    // The budgets page names the key the budget is on.
    let budget_id = budgets[0]["id"].as_str().unwrap();
    let html = b.page(&format!("/budgets?org={org}")).await;
    assert!(text_of(&html, &format!("budget-target-{budget_id}")).starts_with("deploy (sk-aihub-"));

    // A bad amount is a message and changes nothing.
    let r = b
        .post(
            &format!("/keys/{id}/budget"),
            &[("csrf", &csrf), ("org", &org), ("amount", "5.255")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&r.text().await.unwrap(), "key-budget-error"),
        "The amount has more decimals than the currency has."
    );
    assert_eq!(
        api_list(&app, &token, &org, "budgets").await[0]["amount_micros"],
        5_250_000
    );

    // Remove both.
    let r = b
        .post(
            &format!("/keys/{id}/limits"),
            &[("csrf", &csrf), ("org", &org), ("rpm", ""), ("tpm", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(api_list(&app, &token, &org, "limits").await.is_empty());
    let r = b
        .post(
            &format!("/keys/{id}/budget/delete"),
            &[("csrf", &csrf), ("org", &org)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(api_list(&app, &token, &org, "budgets").await.is_empty());

    // Rotate after the confirmation page: the new secret once, the old one refused.
    assert_eq!(
        app.v1("/v1/chat/completions", &secret, chat())
            .await
            .status(),
        StatusCode::OK
    );
    let html = b.page(&format!("/keys/{id}/rotate?org={org}")).await;
    assert_eq!(text_of(&html, "rotate-key-name"), "deploy");
    assert!(html.contains("id=\"confirm-rotate\""));
    let r = b
        .post(
            &format!("/keys/{id}/rotate"),
            &[("csrf", &csrf), ("org", &org)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let new_secret = text_of(&html, "new-key-secret");
    assert!(new_secret.starts_with("sk-aihub-"));
    assert_ne!(new_secret, secret);
    assert!(html.contains("id=\"secret-warning\""));
    assert!(html.contains("id=\"copy-secret\""));
    assert_eq!(
        app.v1("/v1/chat/completions", &secret, chat())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.v1("/v1/chat/completions", &new_secret, chat())
            .await
            .status(),
        StatusCode::OK
    );
    let html = b.page(&format!("/keys/{id}?org={org}")).await;
    assert!(!html.contains(&new_secret), "shown once");
}

async fn own_key_caps_show_as_form_messages(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let shared = shared_org(&app, &owner.token).await;
    let (b, token, _) = signed_in(&app, "member@example.com").await;
    join(&app, &token, &shared, Role::Member).await;
    let me: Value = app.get("/api/v1/me", &token).await.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap();
    for (what, body) in [
        (
            "budgets",
            json!({"scope_type": "user", "scope_id": user_id, "amount": "10"}),
        ),
        (
            "limits",
            json!({"scope_type": "user", "scope_id": user_id, "rpm": 10}),
        ),
    ] {
        let r = app
            .post(&format!("/api/v1/orgs/{shared}/{what}"), &owner.token, body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let (id, _) = create_key(&b, &shared, "mine").await;
    // The budget and limit forms suggest the key by name for the scope id.
    for page in ["budgets", "limits"] {
        let html = b.page(&format!("/{page}?org={shared}")).await;
        assert!(
            html.contains(&format!("<option value=\"{id}\" label=\"mine (sk-aihub-")),
            "{page}"
        );
    }
    let html = b.page(&format!("/keys/{id}?org={shared}")).await;
    assert!(html.contains("id=\"key-budget-save\""));
    assert!(html.contains("id=\"key-limits-save\""));
    let csrf = field(&html, "csrf");

    let r = b
        .post(
            &format!("/keys/{id}/budget"),
            &[("csrf", &csrf), ("org", &shared), ("amount", "20")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text_of(&r.text().await.unwrap(), "key-budget-error")
            .starts_with("This is more than your own budget")
    );
    let r = b
        .post(
            &format!("/keys/{id}/limits"),
            &[("csrf", &csrf), ("org", &shared), ("rpm", "100")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text_of(&r.text().await.unwrap(), "key-limits-error")
            .starts_with("This is above your own rate limit")
    );

    // In Chinese, without the service's English detail.
    b.get("/lang/zh-CN").await;
    let r = b
        .post(
            &format!("/keys/{id}/budget"),
            &[("csrf", &csrf), ("org", &shared), ("amount", "20")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert_eq!(
        text_of(&html, "key-budget-error"),
        "该额度超过了你本人同一周期预算的上限。只有所有者或管理员可以为密钥设置更高的预算。"
    );
    assert!(html.contains("编辑密钥"));

    // Within the caps it works.
    let r = b
        .post(
            &format!("/keys/{id}/budget"),
            &[("csrf", &csrf), ("org", &shared), ("amount", "5")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let key_budgets: Vec<Value> = api_list(&app, &owner.token, &shared, "budgets")
        .await
        .into_iter()
        .filter(|b| b["scope_type"] == "key")
        .collect();
    assert_eq!(key_budgets.len(), 1);
    assert_eq!(key_budgets[0]["amount_micros"], 5_000_000);
    let key_limits = api_list(&app, &owner.token, &shared, "limits")
        .await
        .into_iter()
        .filter(|l| l["scope_type"] == "key")
        .count();
    assert_eq!(key_limits, 0);
}

async fn viewers_other_orgs_and_wrong_tokens_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let shared = shared_org(&app, &owner.token).await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{shared}/keys"),
            &owner.token,
            json!({"name": "<script>alert(1)</script>"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let secret = v["key"].as_str().unwrap().to_owned();

    let (b, token, mine) = signed_in(&app, "viewer@example.com").await;
    join(&app, &token, &shared, Role::Viewer).await;
    let html = b.page(&format!("/keys/{id}?org={shared}")).await;
    assert!(!html.contains("<script>alert(1)</script>"), "escaped");
    for hidden in [
        "key-edit",
        "key-rotate",
        "key-limits-save",
        "key-budget-save",
    ] {
        assert!(!html.contains(&format!("id=\"{hidden}\"")), "{hidden}");
    }
    let csrf = field(&html, "csrf");
    let posts: [(String, Vec<(&str, &str)>); 5] = [
        (format!("/keys/{id}"), vec![("name", "mine now")]),
        (format!("/keys/{id}/limits"), vec![("rpm", "1")]),
        (format!("/keys/{id}/budget"), vec![("amount", "1")]),
        (format!("/keys/{id}/budget/delete"), vec![]),
        (format!("/keys/{id}/rotate"), vec![]),
    ];
    for (path, extra) in &posts {
        let mut form = vec![("csrf", csrf.as_str()), ("org", shared.as_str())];
        form.extend(extra.iter().copied());
        let r = b.post(path, &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {path}");
        // From the viewer's own organization, the key does not exist.
        let mut form = vec![("csrf", csrf.as_str()), ("org", mine.as_str())];
        form.extend(extra.iter().copied());
        let r = b.post(path, &form).await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "POST {path} in another org"
        );
        // And without the right token nothing reaches the handler.
        let mut form = vec![("csrf", "forged"), ("org", shared.as_str())];
        form.extend(extra.iter().copied());
        let r = b.post(path, &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = b.get(&format!("/keys/{id}?org={mine}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(text_of(&r.text().await.unwrap(), "error-code"), "not_found");

    let key: Value = app
        .get(&format!("/api/v1/orgs/{shared}/keys/{id}"), &owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(key["name"], "<script>alert(1)</script>");
    assert!(
        api_list(&app, &owner.token, &shared, "limits")
            .await
            .is_empty()
    );
    assert!(
        api_list(&app, &owner.token, &shared, "budgets")
            .await
            .is_empty()
    );
    assert_eq!(
        app.models_status(&secret).await,
        StatusCode::OK,
        "not rotated"
    );
}
