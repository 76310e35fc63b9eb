//! The dashboard's budgets, alerts and rate limits pages over real HTTP: each form's effect seen
//! through the JSON API, amounts typed in the currency's decimals (and refused with a message
//! otherwise), webhook secrets shown once, alerts listed, refusals for Viewers and Members, wrong
//! tokens, other organizations' ids, escaping and Chinese.

use aihub_core::Role;
use aihub_core::time::now;
use aihub_service::alerts::Crossing;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, api_tests, spawn_app};
use crate::web_client::{Browser, field, location, text_of};

api_tests!(
    budgets_are_created_edited_rotated_and_deleted,
    bad_amounts_give_a_message_and_change_nothing,
    fired_alerts_are_listed_with_their_delivery,
    limits_are_created_edited_and_deleted,
    viewers_and_members_change_nothing,
    wrong_tokens_and_other_orgs_change_nothing,
    pages_escape_names_and_speak_chinese,
);

/// A browser signed in as a new user; their session token and personal organization.
pub async fn signed_in(app: &TestApp, email: &str) -> (Browser, String, String) {
    let b = Browser::new(app);
    b.sign_up(email, "Someone").await;
    b.sign_in(email).await;
    let token = b.session_token();
    let html = b.page("/keys").await;
    let org = field(&html, "org");
    (b, token, org)
}

pub async fn api_list(app: &TestApp, token: &str, org: &str, what: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/orgs/{org}/{what}"), token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["data"].as_array().unwrap().clone()
}

/// Adds the browser's user to `org` with `role`.
pub async fn join(app: &TestApp, token: &str, org: &str, role: Role) {
    let me: Value = app.get("/api/v1/me", token).await.json().await.unwrap();
    app.state
        .services
        .store
        .add_member(
            org.parse().unwrap(),
            me["id"].as_str().unwrap().parse().unwrap(),
            role,
            now(),
        )
        .await
        .unwrap();
}

/// An organization of `owner` (API token) that others can join.
pub async fn shared_org(app: &TestApp, owner_token: &str) -> String {
    let r = app
        .post("/api/v1/orgs", owner_token, json!({"name": "Shared"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn budgets_are_created_edited_rotated_and_deleted(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;

    let html = b.page(&format!("/budgets?org={org}")).await;
    assert!(html.contains("id=\"no-budgets\""));
    assert!(html.contains("id=\"nav-budgets\" href=\"/budgets?org="));
    assert!(html.contains("aria-current=\"page\">Budgets"));
    let csrf = field(&html, "csrf");

    // Create an organization budget with a webhook: its signing secret is shown once.
    let r = b
        .post(
            "/budgets",
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("scope_type", "org"),
                ("scope_id", ""),
                ("name", "Team spend"),
                ("amount", "12.50"),
                ("currency", "USD"),
                ("period", "weekly"),
                ("thresholds", "50, 100"),
                ("webhook_url", "https://hooks.example.com/aihub"),
                ("alert_emails", "ops@example.com, cfo@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = r.text().await.unwrap();
    let first_secret = text_of(&html, "webhook-secret");
    assert!(first_secret.starts_with("whsec_"));
    assert!(html.contains("id=\"secret-warning\""));

    let budgets = api_list(&app, &token, &org, "budgets").await;
    assert_eq!(budgets.len(), 1);
    let budget = &budgets[0];
    let id = budget["id"].as_str().unwrap().to_owned();
    assert_eq!(budget["amount_micros"], 12_500_000);
    assert_eq!(budget["period"], "weekly");
    assert_eq!(budget["scope_type"], "org");
    assert_eq!(budget["thresholds"], json!([50, 100]));
    assert_eq!(budget["webhook_url"], "https://hooks.example.com/aihub");
    assert_eq!(
        budget["alert_emails"],
        json!(["ops@example.com", "cfo@example.com"])
    );

    // Listed with its figures and a bar; never the secret again.
    let html = b.page(&format!("/budgets?org={org}")).await;
    assert!(html.contains(&format!("id=\"budget-row-{id}\"")));
    assert_eq!(text_of(&html, &format!("budget-amount-{id}")), "12.5");
    assert_eq!(text_of(&html, &format!("budget-spent-{id}")), "0");
    assert!(html.contains("<svg class=\"progress ok\""));
    assert!(!html.contains(&first_secret));

    // Edit the amount and alert settings.
    let html = b.page(&format!("/budgets/{id}?org={org}")).await;
    assert!(html.contains("id=\"budget-delete\""));
    let r = b
        .post(
            &format!("/budgets/{id}"),
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("name", "Team spend"),
                ("amount", "20"),
                ("thresholds", "80,90,100"),
                ("webhook_url", "https://hooks.example.com/aihub"),
                ("alert_emails", "ops@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/budgets?org={org}&done=saved"));
    let budget = &api_list(&app, &token, &org, "budgets").await[0];
    assert_eq!(budget["amount_micros"], 20_000_000);
    assert_eq!(budget["thresholds"], json!([80, 90, 100]));
    assert_eq!(budget["alert_emails"], json!(["ops@example.com"]));

    // Rotate the webhook secret: a new one, shown once.
    let r = b
        .post(
            &format!("/budgets/{id}/rotate-secret"),
            &[("csrf", &csrf), ("org", &org)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = text_of(&r.text().await.unwrap(), "webhook-secret");
    assert!(second.starts_with("whsec_"));
    assert_ne!(second, first_secret);

    // Delete (the form carries a confirmation for the browser).
    let html = b.page(&format!("/budgets/{id}?org={org}")).await;
    assert!(html.contains("id=\"budget-delete-form\" data-confirm=\""));
    let r = b
        .post(
            &format!("/budgets/{id}/delete"),
            &[("csrf", &csrf), ("org", &org)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(api_list(&app, &token, &org, "budgets").await.is_empty());
    let html = b.page(&location(&r)).await;
    assert!(html.contains("id=\"notice\""));
    assert!(html.contains("id=\"no-budgets\""));
}

async fn bad_amounts_give_a_message_and_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;
    let csrf = field(&b.page("/budgets").await, "csrf");
    let create = |amount: &'static str| {
        let (csrf, org) = (csrf.clone(), org.clone());
        let b = &b;
        async move {
            let r = b
                .post(
                    "/budgets",
                    &[
                        ("csrf", &csrf),
                        ("org", &org),
                        ("scope_type", "org"),
                        ("amount", amount),
                        ("currency", "USD"),
                        ("period", "monthly"),
                    ],
                )
                .await;
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
            let html = r.text().await.unwrap();
            assert!(
                html.contains(&format!("value=\"{amount}\"")),
                "the refused form keeps the amount"
            );
            text_of(&html, "form-error")
        }
    };
    assert_eq!(create("-5").await.trim(), "The amount cannot be negative.");
    assert_eq!(
        create("1.234").await.trim(),
        "The amount has more decimals than the currency has."
    );
    assert!(
        create("ten")
            .await
            .starts_with("The amount is not a number.")
    );
    assert_eq!(
        create("0").await.trim(),
        "The amount must be greater than zero."
    );
    assert!(api_list(&app, &token, &org, "budgets").await.is_empty());

    // The same on the edit form: the amount stays.
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/budgets"),
            &token,
            json!({"scope_type": "org", "amount": "10"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = b
        .post(
            &format!("/budgets/{id}"),
            &[("csrf", &csrf), ("org", &org), ("amount", "12,5")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_of(&r.text().await.unwrap(), "form-error").contains("not a number"));
    // A refusal of the service (a threshold out of range) is a form message too.
    let r = b
        .post(
            &format!("/budgets/{id}"),
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("amount", "11"),
                ("thresholds", "5000"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_of(&r.text().await.unwrap(), "form-error").starts_with("Thresholds must be"));
    let budget = &api_list(&app, &token, &org, "budgets").await[0];
    assert_eq!(budget["amount_micros"], 10_000_000);

    // In Chinese.
    b.get("/lang/zh-CN").await;
    let r = b
        .post(
            "/budgets",
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("scope_type", "org"),
                ("amount", "-1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&r.text().await.unwrap(), "form-error"),
        "额度不能为负数。"
    );
    assert_eq!(api_list(&app, &token, &org, "budgets").await.len(), 1);
}

async fn fired_alerts_are_listed_with_their_delivery(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/budgets"),
            &token,
            json!({"scope_type": "org", "name": "Monthly", "amount": "10"}),
        )
        .await;
    let id: uuid::Uuid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let rule = app
        .state
        .services
        .store
        .budget(org.parse().unwrap(), id)
        .await
        .unwrap()
        .unwrap();
    let alert = app
        .state
        .services
        .alerts
        .process(
            Crossing {
                period_start: rule.period.start(now()),
                threshold_pct: 80,
                spent_micros: 8_000_000,
                budget: rule,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    for path in [
        format!("/budgets?org={org}"),
        format!("/budgets/{id}?org={org}"),
    ] {
        let html = b.page(&path).await;
        let row_at = html
            .find(&format!("id=\"alert-row-{}\"", alert.id))
            .unwrap();
        let row = &html[row_at..row_at + html[row_at..].find("</tr>").unwrap()];
        assert!(row.contains("Monthly"));
        assert!(row.contains("80%"));
        assert!(row.contains("8 / 10 USD"));
        assert!(row.contains("Not set up"), "no webhook, no e-mail: {row}");
    }
}

async fn limits_are_created_edited_and_deleted(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;
    let html = b.page(&format!("/limits?org={org}")).await;
    assert!(html.contains("id=\"no-limits\""));
    let csrf = field(&html, "csrf");

    let r = b
        .post(
            "/limits",
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("scope_type", "org"),
                ("model", "mock-chat"),
                ("rpm", "100"),
                ("tpm", "5000"),
                ("concurrency", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let limits = api_list(&app, &token, &org, "limits").await;
    assert_eq!(limits.len(), 1);
    let id = limits[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(limits[0]["model"], "mock-chat");
    assert_eq!(limits[0]["rpm"], 100);
    assert_eq!(limits[0]["tpm"], 5000);
    assert_eq!(limits[0]["concurrency"], Value::Null);
    let html = b.page(&format!("/limits?org={org}")).await;
    assert!(html.contains(&format!("id=\"limit-row-{id}\"")));
    assert!(html.contains(&format!(
        "id=\"limit-rpm-{id}\" name=\"rpm\" type=\"text\" inputmode=\"numeric\" value=\"100\""
    )));

    // A second rule for the same scope and model is refused with a message.
    let r = b
        .post(
            "/limits",
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("scope_type", "org"),
                ("model", "mock-chat"),
                ("rpm", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(text_of(&html, "form-error").starts_with("This scope already"));
    assert!(
        html.contains("id=\"limit-model\" name=\"model\" type=\"text\" value=\"mock-chat\""),
        "the refused form keeps its values"
    );
    // Letters are refused before reaching the service.
    let r = b
        .post(
            &format!("/limits/{id}"),
            &[("csrf", &csrf), ("org", &org), ("rpm", "lots")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api_list(&app, &token, &org, "limits").await[0]["rpm"], 100);

    // Edit: an emptied field removes that metric.
    let r = b
        .post(
            &format!("/limits/{id}"),
            &[
                ("csrf", &csrf),
                ("org", &org),
                ("rpm", "50"),
                ("tpm", ""),
                ("concurrency", "4"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let limit = &api_list(&app, &token, &org, "limits").await[0];
    assert_eq!(limit["rpm"], 50);
    assert_eq!(limit["tpm"], Value::Null);
    assert_eq!(limit["concurrency"], 4);

    let r = b
        .post(
            &format!("/limits/{id}/delete"),
            &[("csrf", &csrf), ("org", &org)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(api_list(&app, &token, &org, "limits").await.is_empty());
}

async fn viewers_and_members_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let shared = shared_org(&app, &owner.token).await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{shared}/budgets"),
            &owner.token,
            json!({"scope_type": "org", "amount": "10"}),
        )
        .await;
    let budget_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            &format!("/api/v1/orgs/{shared}/limits"),
            &owner.token,
            json!({"scope_type": "org", "rpm": 100}),
        )
        .await;
    let limit_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for (email, role) in [
        ("viewer@example.com", Role::Viewer),
        ("member@example.com", Role::Member),
    ] {
        let (b, token, _) = signed_in(&app, email).await;
        join(&app, &token, &shared, role).await;

        let html = b.page(&format!("/budgets?org={shared}")).await;
        assert!(html.contains(&format!("id=\"budget-row-{budget_id}\"")));
        let html_limits = b.page(&format!("/limits?org={shared}")).await;
        assert!(html_limits.contains(&format!("id=\"limit-row-{limit_id}\"")));
        assert_eq!(
            text_of(&html, &format!("budget-target-{budget_id}")),
            "Shared"
        );
        assert_eq!(
            text_of(&html_limits, &format!("limit-target-{limit_id}")),
            "Shared"
        );
        assert!(!html_limits.contains(&format!("id=\"limit-save-{limit_id}\"")));
        assert!(!html_limits.contains(&format!("id=\"limit-delete-{limit_id}\"")));
        if role == Role::Viewer {
            assert!(html.contains("id=\"cannot-manage-budgets\""));
            assert!(!html.contains("id=\"budget-create\""));
            assert!(html_limits.contains("id=\"cannot-manage-limits\""));
        } else {
            // A Member may put budgets on their own keys only: the form offers the key scope.
            assert!(html.contains("id=\"budget-create\""));
            assert!(!html.contains("<option value=\"org\""));
        }
        let html = b.page(&format!("/budgets/{budget_id}?org={shared}")).await;
        assert!(!html.contains("id=\"budget-save\""));
        assert!(!html.contains("id=\"budget-delete\""));
        let csrf = field(&html, "csrf");

        let posts: [(String, Vec<(&str, &str)>); 5] = [
            (
                "/budgets".into(),
                vec![("scope_type", "org"), ("amount", "99")],
            ),
            (format!("/budgets/{budget_id}"), vec![("amount", "99")]),
            (format!("/budgets/{budget_id}/delete"), vec![]),
            (
                "/limits".into(),
                vec![("scope_type", "org"), ("model", "x"), ("rpm", "1")],
            ),
            (format!("/limits/{limit_id}/delete"), vec![]),
        ];
        for (path, extra) in posts {
            let mut form = vec![("csrf", csrf.as_str()), ("org", shared.as_str())];
            form.extend(extra);
            let r = b.post(&path, &form).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{email} POST {path}");
            assert_eq!(text_of(&r.text().await.unwrap(), "error-code"), "forbidden");
        }
        let r = b
            .post(
                &format!("/limits/{limit_id}"),
                &[("csrf", &csrf), ("org", &shared), ("rpm", "1000")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let budgets = api_list(&app, &owner.token, &shared, "budgets").await;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0]["amount_micros"], 10_000_000);
    let limits = api_list(&app, &owner.token, &shared, "limits").await;
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0]["rpm"], 100);
}

async fn wrong_tokens_and_other_orgs_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;
    let csrf = field(&b.page("/budgets").await, "csrf");
    for bad in ["", "not-the-token"] {
        let r = b
            .post(
                "/budgets",
                &[
                    ("csrf", bad),
                    ("org", &org),
                    ("scope_type", "org"),
                    ("amount", "5"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = b
            .post(
                "/limits",
                &[
                    ("csrf", bad),
                    ("org", &org),
                    ("scope_type", "org"),
                    ("rpm", "5"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert!(api_list(&app, &token, &org, "budgets").await.is_empty());
    assert!(api_list(&app, &token, &org, "limits").await.is_empty());

    // Another organization's budget and limit: not found, and untouched.
    let other = app.signup("eve@example.com").await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/budgets", other.org_id),
            &other.token,
            json!({"scope_type": "org", "amount": "10"}),
        )
        .await;
    let theirs = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/limits", other.org_id),
            &other.token,
            json!({"scope_type": "org", "rpm": 10}),
        )
        .await;
    let their_limit = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for org_param in [org.as_str(), other.org_id.as_str()] {
        let r = b.get(&format!("/budgets/{theirs}?org={org_param}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(text_of(&r.text().await.unwrap(), "error-code"), "not_found");
        for path in [
            format!("/budgets/{theirs}/delete"),
            format!("/limits/{their_limit}/delete"),
        ] {
            let r = b.post(&path, &[("csrf", &csrf), ("org", org_param)]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
    assert_eq!(
        api_list(&app, &other.token, &other.org_id, "budgets")
            .await
            .len(),
        1
    );
    assert_eq!(
        api_list(&app, &other.token, &other.org_id, "limits")
            .await
            .len(),
        1
    );
}

async fn pages_escape_names_and_speak_chinese(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, token, org) = signed_in(&app, "ada@example.com").await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/budgets"),
            &token,
            json!({"scope_type": "org", "name": "<script>alert(1)</script>", "amount": "10"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = b.page("/budgets").await;
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;")
    );

    b.get("/lang/zh-CN").await;
    let html = b.page("/budgets").await;
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(html.contains("创建预算"));
    assert!(html.contains("每月"));
    assert!(html.contains("还没有发出过提醒"));
    let html = b.page("/limits").await;
    assert!(html.contains("添加速率限制"));
    assert!(html.contains("还没有速率限制"));
    assert!(html.contains("id=\"nav-limits\""));
}
