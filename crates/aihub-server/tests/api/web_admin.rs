//! The platform admin pages and the account page, driven as a browser: users (search, disable
//! after a confirmation, enable, never oneself), organizations and their plans, plans, providers,
//! models and prices, each form's effect read back through the JSON API; the not-found answer
//! and unchanged state for everyone else; the password change with its refusals.

use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, api_tests, spawn_app};
use crate::web_client::{Browser, field, location, text_of};

api_tests!(
    non_admins_get_not_found_and_their_posts_change_nothing,
    an_admin_disables_and_enables_users,
    an_admin_puts_orgs_on_plans_and_edits_plans,
    an_admin_manages_providers_models_and_prices,
    the_password_is_changed_on_the_account_page,
);

/// A browser signed in as the platform admin, and the admin's API token.
async fn admin_browser(app: &TestApp) -> (Browser, String) {
    let token = app.platform_admin().await;
    let b = Browser::new(app);
    b.sign_in("root@example.com").await;
    (b, token)
}

async fn api_json(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get(path, token).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

/// The `value` of the input with `id`.
fn value_of(html: &str, id: &str) -> String {
    let start = html.find(&format!("id=\"{id}\"")).unwrap();
    let tag = &html[start..start + html[start..].find('>').unwrap()];
    let v = tag.find("value=\"").unwrap() + "value=\"".len();
    tag[v..v + tag[v..].find('"').unwrap()].to_owned()
}

const ADMIN_PAGES: [&str; 8] = [
    "/admin",
    "/admin/users",
    "/admin/orgs",
    "/admin/plans",
    "/admin/providers",
    "/admin/models",
    "/admin/prices",
    "/admin/plans/0190f5e4-0000-7000-8000-000000000000",
];

async fn non_admins_get_not_found_and_their_posts_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let victim = app.signup("victim@example.com").await;
    let b = Browser::new(&app);
    b.sign_up("eve@example.com", "Eve").await;
    b.sign_in("eve@example.com").await;

    let home = b.page("/").await;
    assert!(!home.contains("id=\"nav-admin\""));
    for path in ADMIN_PAGES {
        let r = b.get(path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(text_of(&r.text().await.unwrap(), "error-code"), "not_found");
    }
    let csrf = field(&home, "csrf");
    let r = app
        .post("/api/v1/admin/plans", &root, json!({"name": "basic"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let plan_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let plans_before = api_json(&app, "/api/v1/plans", &root).await;
    let posts: [(String, Vec<(&str, &str)>); 6] = [
        (format!("/admin/users/{}/disable", victim.user_id), vec![]),
        (
            format!("/admin/orgs/{}/plan", victim.org_id),
            vec![("plan_id", plan_id.as_str())],
        ),
        (
            "/admin/plans".into(),
            vec![("name", "evil"), ("currency", "USD")],
        ),
        (
            "/admin/providers".into(),
            vec![("name", "evil"), ("kind", "mock")],
        ),
        (
            "/admin/models".into(),
            vec![("name", "evil"), ("provider", "mock")],
        ),
        (
            "/admin/prices".into(),
            vec![
                ("model", "mock-gpt"),
                ("currency", "USD"),
                ("input", "0"),
                ("output", "0"),
            ],
        ),
    ];
    for (path, fields) in posts {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let r = b.post(&path, &form).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    // Nothing changed: the victim still works, no plan, provider, model or price appeared,
    // and the victim's org is on no plan.
    assert_eq!(
        app.get("/api/v1/me", &victim.token).await.status(),
        StatusCode::OK
    );
    assert_eq!(api_json(&app, "/api/v1/plans", &root).await, plans_before);
    let providers = api_json(&app, "/api/v1/admin/providers", &root).await;
    assert!(
        !providers["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "evil")
    );
    let models = api_json(&app, "/api/v1/admin/models", &root).await;
    assert!(
        !models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "evil")
    );
    let prices = api_json(&app, "/api/v1/admin/prices", &root).await;
    assert!(
        !prices["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["source"] == "admin")
    );
    let quota = api_json(
        &app,
        &format!("/api/v1/orgs/{}/quota", victim.org_id),
        &victim.token,
    )
    .await;
    assert_eq!(quota["plan"], Value::Null);
}

async fn user_view(app: &TestApp, root: &str, id: &str) -> Value {
    let users = api_json(app, "/api/v1/admin/users?limit=100", root).await;
    users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .cloned()
        .unwrap()
}

async fn an_admin_disables_and_enables_users(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let ada = app.signup("ada@example.com").await;
    let _bob = app.signup("bob@example.com").await;
    let evil = "<script>alert(1)</script>";
    Browser::new(&app).sign_up("mal@example.com", evil).await;
    let (b, root) = admin_browser(&app).await;
    let root_id = api_json(&app, "/api/v1/me", &root).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let home = b.page("/").await;
    assert!(home.contains("id=\"nav-admin\""));
    let html = b.page("/admin/users").await;
    assert!(html.contains("ada@example.com") && html.contains("bob@example.com"));
    assert!(!html.contains(evil), "names are escaped");
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(html.contains(&format!("id=\"disable-{}\"", ada.user_id)));
    assert!(
        !html.contains(&format!("id=\"disable-{root_id}\"")),
        "no disable button for oneself"
    );

    // Search by e-mail finds exactly that user.
    let html = b.page("/admin/users?q=ada%40example.com").await;
    assert!(html.contains("ada@example.com") && !html.contains("bob@example.com"));
    let html = b.page("/admin/users?q=nobody%40example.com").await;
    assert!(html.contains("id=\"no-users\""));

    // Disable after the confirmation page; a wrong token changes nothing.
    let confirm = b
        .page(&format!("/admin/users/{}/disable", ada.user_id))
        .await;
    assert_eq!(text_of(&confirm, "disable-user-email"), "ada@example.com");
    let csrf = field(&confirm, "csrf");
    let path = format!("/admin/users/{}/disable", ada.user_id);
    let r = b.post(&path, &[("csrf", "wrong")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        user_view(&app, &root, &ada.user_id).await["disabled"],
        false
    );
    let r = b.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/admin/users?done=1");
    assert_eq!(user_view(&app, &root, &ada.user_id).await["disabled"], true);
    assert_eq!(
        app.get("/api/v1/me", &ada.token).await.status(),
        StatusCode::UNAUTHORIZED,
        "the disabled user's sessions ended"
    );
    let html = b.page("/admin/users?done=1").await;
    assert!(html.contains("id=\"notice\""));
    assert!(html.contains(&format!("id=\"enable-{}\"", ada.user_id)));

    // Enable again.
    let r = b
        .post(
            &format!("/admin/users/{}/enable", ada.user_id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        user_view(&app, &root, &ada.user_id).await["disabled"],
        false
    );
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );

    // Never oneself: the service's conflict, and the admin stays enabled.
    let r = b
        .post(
            &format!("/admin/users/{root_id}/disable"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(user_view(&app, &root, &root_id).await["disabled"], false);

    // Chinese.
    b.get("/lang/zh-CN?next=/").await;
    let html = b.page("/admin/users").await;
    assert!(html.contains("停用") && html.contains("平台管理"));
}

async fn an_admin_puts_orgs_on_plans_and_edits_plans(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let ada = app.signup("ada@example.com").await;
    let evil = "<script>alert(1)</script>";
    let r = app
        .post("/api/v1/orgs", &ada.token, json!({"name": evil}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (b, root) = admin_browser(&app).await;

    // A new plan through the form: the spend is parsed to micro-units, exactly.
    let html = b.page("/admin/plans").await;
    let csrf = field(&html, "csrf");
    let r = b
        .post(
            "/admin/plans",
            &[
                ("csrf", &csrf),
                ("name", "team"),
                ("rpm", "600"),
                ("tpm", ""),
                ("concurrency", ""),
                ("monthly_tokens", "1000000"),
                ("monthly_spend", "12.50"),
                ("currency", "USD"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let plans = api_json(&app, "/api/v1/plans", &root).await;
    let team = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "team")
        .cloned()
        .unwrap();
    assert_eq!(team["rpm"], 600);
    assert_eq!(team["tpm"], Value::Null);
    assert_eq!(team["monthly_spend_micros"], 12_500_000);
    let team_id = team["id"].as_str().unwrap().to_owned();
    let html = b.page("/admin/plans").await;
    assert!(html.contains("12.5 USD"));

    // Invalid input is shown again and creates nothing.
    let count = plans["data"].as_array().unwrap().len();
    let r = b
        .post(
            "/admin/plans",
            &[("csrf", &csrf), ("name", "bad"), ("rpm", "many")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"error\""));
    let r = b
        .post(
            "/admin/plans",
            &[
                ("csrf", &csrf),
                ("name", "bad2"),
                ("monthly_spend", "1.5e3"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let plans = api_json(&app, "/api/v1/plans", &root).await;
    assert_eq!(plans["data"].as_array().unwrap().len(), count);

    // Edit: the form shows the plan; an emptied limit is removed.
    let html = b.page(&format!("/admin/plans/{team_id}")).await;
    assert_eq!(value_of(&html, "plan-monthly-spend"), "12.5");
    let r = b
        .post(
            &format!("/admin/plans/{team_id}"),
            &[
                ("csrf", &csrf),
                ("name", "team"),
                ("rpm", ""),
                ("tpm", "5000"),
                ("concurrency", ""),
                ("monthly_tokens", ""),
                ("monthly_spend", "99.999999"),
                ("currency", "USD"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let plans = api_json(&app, "/api/v1/plans", &root).await;
    let team = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == team_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(team["rpm"], Value::Null);
    assert_eq!(team["tpm"], 5000);
    assert_eq!(team["monthly_spend_micros"], 99_999_999);

    // Organizations: listed with their plan (names escaped); assign the new plan.
    let html = b.page("/admin/orgs").await;
    assert!(!html.contains(evil));
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(html.contains(&format!("id=\"org-{}\"", ada.org_id)));
    let r = b
        .post(
            &format!("/admin/orgs/{}/plan", ada.org_id),
            &[("csrf", &csrf), ("plan_id", &team_id)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/admin/orgs?done=1");
    let quota = api_json(
        &app,
        &format!("/api/v1/orgs/{}/quota", ada.org_id),
        &ada.token,
    )
    .await;
    assert_eq!(quota["plan"]["name"], "team");
    let html = b.page("/admin/orgs").await;
    assert_eq!(text_of(&html, &format!("org-plan-{}", ada.org_id)), "team");
}

async fn an_admin_manages_providers_models_and_prices(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (b, root) = admin_browser(&app).await;
    std::fs::create_dir_all(app.dir.path().join("secrets")).unwrap();
    std::fs::write(
        app.dir.path().join("secrets/acme.key"),
        "sk-very-secret-value",
    )
    .unwrap();

    let html = b.page("/admin/providers").await;
    let csrf = field(&html, "csrf");
    let r = b
        .post(
            "/admin/providers",
            &[
                ("csrf", &csrf),
                ("name", "acme"),
                ("kind", "openai"),
                ("base_url", "http://127.0.0.1:9/v1"),
                ("api_key_file", "acme.key"),
                ("total_timeout_ms", "30000"),
            ],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let providers = api_json(&app, "/api/v1/admin/providers", &root).await;
    let acme = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "acme")
        .cloned()
        .unwrap();
    assert_eq!(acme["kind"], "openai");
    assert_eq!(acme["total_timeout_ms"], 30000);
    let html = b.page("/admin/providers").await;
    assert!(
        !html.contains("sk-very-secret-value"),
        "the secret is never shown"
    );
    assert_eq!(
        text_of(&html, "provider-key-acme"),
        acme["has_api_key"]
            .as_bool()
            .map(|set| if set { "Yes" } else { "No" })
            .unwrap()
    );

    // Edit the provider.
    let html = b.page("/admin/providers/acme").await;
    assert!(!html.contains("sk-very-secret-value"));
    assert_eq!(
        value_of(&html, "provider-base-url"),
        "http://127.0.0.1:9/v1"
    );
    let r = b
        .post(
            "/admin/providers/acme",
            &[
                ("csrf", &csrf),
                ("kind", "openai"),
                ("base_url", "http://127.0.0.1:10/v1"),
                ("api_key_file", "acme.key"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let providers = api_json(&app, "/api/v1/admin/providers", &root).await;
    assert!(
        providers["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "acme" && p["base_url"] == "http://127.0.0.1:10/v1")
    );

    // A model routed to it, then edited.
    let r = b
        .post(
            "/admin/models",
            &[
                ("csrf", &csrf),
                ("name", "acme-large"),
                ("provider", "acme"),
                ("upstream_model", "large-1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = b.page("/admin/models/acme-large").await;
    assert!(html.contains("id=\"edit-model-form\""));
    let r = b
        .post(
            "/admin/models/acme-large",
            &[
                ("csrf", &csrf),
                ("provider", "acme"),
                ("upstream_model", "large-2"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let models = api_json(&app, "/api/v1/admin/models", &root).await;
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "acme-large" && m["upstream_model"] == "large-2")
    );
    let html = b.page("/admin/models").await;
    assert_eq!(text_of(&html, "model-upstream-acme-large"), "large-2");

    // A model on a provider that does not exist is refused on the form.
    let r = b
        .post(
            "/admin/models",
            &[("csrf", &csrf), ("name", "ghost"), ("provider", "nowhere")],
        )
        .await;
    assert!(r.status().is_client_error());
    let models = api_json(&app, "/api/v1/admin/models", &root).await;
    assert!(
        !models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "ghost")
    );

    // A price, parsed exactly to micro-units.
    let r = b
        .post(
            "/admin/prices",
            &[
                ("csrf", &csrf),
                ("model", "acme-large"),
                ("currency", "USD"),
                ("input", "2.50"),
                ("cached_input", "0.125"),
                ("output", "10"),
                ("effective_from", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let prices = api_json(&app, "/api/v1/admin/prices", &root).await;
    let price = prices["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "acme-large")
        .cloned()
        .unwrap();
    assert_eq!(price["input_micros"], 2_500_000);
    assert_eq!(price["cached_input_micros"], 125_000);
    assert_eq!(price["output_micros"], 10_000_000);
    // "Edit" fills the form with that price, for its successor.
    let id = price["id"].as_str().unwrap();
    let html = b.page(&format!("/admin/prices?from={id}")).await;
    assert_eq!(value_of(&html, "price-input"), "2.5");
    let r = b
        .post(
            "/admin/prices",
            &[
                ("csrf", &csrf),
                ("model", "acme-large"),
                ("currency", "USD"),
                ("input", "abc"),
                ("output", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let after = api_json(&app, "/api/v1/admin/prices", &root).await;
    assert_eq!(after, prices, "a refused price adds nothing");

    // Chinese.
    b.get("/lang/zh-CN?next=/").await;
    let html = b.page("/admin/prices").await;
    assert!(html.contains("每百万令牌"));
}

async fn the_password_is_changed_on_the_account_page(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);
    b.sign_up("ada@example.com", "Ada").await;
    b.sign_in("ada@example.com").await;
    let other_session = app.token("ada@example.com", PASSWORD).await;

    let home = b.page("/").await;
    assert!(home.contains("href=\"/account"));
    let html = b.page("/account").await;
    assert_eq!(text_of(&html, "profile-email"), "ada@example.com");
    assert_eq!(text_of(&html, "profile-name"), "Ada");
    let csrf = field(&html, "csrf");
    let new = "a brand new passphrase";
    let change = |current: &'static str, new: &'static str, repeat: &'static str| {
        let csrf = csrf.clone();
        let b = &b;
        async move {
            b.post(
                "/account/password",
                &[
                    ("csrf", csrf.as_str()),
                    ("current", current),
                    ("new", new),
                    ("repeat", repeat),
                ],
            )
            .await
        }
    };

    // Refusals, each with its reason, and nothing changes.
    let r = change(PASSWORD, new, "something else").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&r.text().await.unwrap(), "error"),
        "The two new passwords differ."
    );
    let r = change("not my password", new, new).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&r.text().await.unwrap(), "error"),
        "The current password is not correct."
    );
    let r = change(PASSWORD, "short", "short").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_of(&r.text().await.unwrap(), "error").contains("too short"));
    let r = b
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", new), ("repeat", new)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no csrf token");
    assert_eq!(
        app.get("/api/v1/me", &other_session).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );

    // Chinese reasons.
    b.get("/lang/zh-CN?next=/").await;
    let html = b.page("/account").await;
    assert!(html.contains("修改密码"));
    let r = change(PASSWORD, new, "x").await;
    assert!(r.text().await.unwrap().contains("两次输入的新密码不一致"));
    b.get("/lang/en?next=/").await;

    // The change: this browser stays signed in, other sessions end, the new password works.
    let r = change(PASSWORD, new, new).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account?changed=1");
    let html = b.page("/account?changed=1").await;
    assert!(html.contains("id=\"notice\""));
    assert_eq!(
        app.get("/api/v1/me", &other_session).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ada@example.com", new).await.status(),
        StatusCode::OK
    );
}
