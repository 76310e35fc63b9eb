//! The web dashboard over real HTTP, as a browser with a cookie jar drives it: sign-up,
//! sign-in, the overview's usage figures, creating (secret shown once) and revoking keys, CSRF
//! and cross-site refusals, languages, security headers, escaping, and role-dependent pages.

use std::time::Duration;

use aihub_core::Role;
use aihub_core::time::now;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use reqwest::cookie::CookieStore;
use reqwest::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, api_tests, captured_logs, spawn_app, spawn_app_with};
use crate::web_client::{Browser, field, location, secret_in, text_of};

api_tests!(
    sign_up_sign_in_create_use_and_revoke_a_key,
    forms_without_the_right_token_change_nothing,
    cross_site_posts_are_refused,
    language_from_accept_language_and_the_cookie,
    pages_and_assets_carry_the_right_headers,
    values_are_escaped,
    viewers_cannot_create_keys,
    an_invitation_link_is_accepted_or_declined_in_the_browser,
);

async fn sign_up_sign_in_create_use_and_revoke_a_key(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);

    // Not signed in: every page sends the browser to sign in, and back afterwards.
    let r = b.get("/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login");
    let r = b.get("/keys").await;
    assert_eq!(location(&r), "/login?next=/keys");

    b.sign_up("ada@example.com", "Ada").await;
    let html = b.page("/login?created=1").await;
    assert!(html.contains("id=\"notice\""));
    b.sign_in("ada@example.com").await;

    let r = b.get("/login?next=/keys").await;
    assert_eq!(location(&r), "/keys", "already signed in");
    let html = b.page("/").await;
    assert_eq!(text_of(&html, "user-name"), "Ada");
    assert_eq!(text_of(&html, "today-requests"), "0");
    assert_eq!(text_of(&html, "month-requests"), "0");
    assert!(html.contains("id=\"today-spend\"><span class=\"money\">0</span>"));

    // Create a key with the form; the answer shows the secret once, with its warning.
    let html = b.page("/keys").await;
    assert!(html.contains("id=\"no-keys\""));
    let csrf = field(&html, "csrf");
    let org = field(&html, "org");
    let r = b
        .post(
            "/keys",
            &[("csrf", &csrf), ("org", &org), ("name", "from the web")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = r.text().await.unwrap();
    let secret = secret_in(&html).expect("the secret is shown");
    assert_eq!(text_of(&html, "new-key-secret"), secret);
    assert!(html.contains("id=\"secret-warning\""));
    assert!(html.contains("id=\"copy-secret\""));

    // Never again: the list shows only the prefix.
    let html = b.page("/keys").await;
    assert!(secret_in(&html).is_some_and(|shown| shown.len() < secret.len()));
    assert!(!html.contains(&secret));
    assert!(html.contains("from the web"));

    // The key works on the gateway, and the overview counts the request once it is loaded.
    let r = app
        .v1(
            "/v1/chat/completions",
            &secret,
            json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut seen = String::new();
    for _ in 0..50 {
        let html = b.page("/").await;
        seen = text_of(&html, "today-requests");
        if seen == "1" {
            assert_eq!(text_of(&html, "month-requests"), "1");
            assert_ne!(text_of(&html, "today-tokens"), "0");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "1", "the request shows on the overview within 5 s");

    // Revoke, after the confirmation page.
    let html = b.page("/keys").await;
    let start = html.find("id=\"revoke-").unwrap() + "id=\"revoke-".len();
    let key_id = html[start..start + 36].to_owned();
    let html = b.page(&format!("/keys/{key_id}/revoke?org={org}")).await;
    assert_eq!(text_of(&html, "revoke-key-name"), "from the web");
    let csrf = field(&html, "csrf");
    let r = b
        .post(
            &format!("/keys/{key_id}/revoke"),
            &[("csrf", &csrf), ("org", &org)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/keys?org={org}&revoked=1"));
    let html = b.page(&location(&r)).await;
    assert!(html.contains("id=\"notice\""));
    assert!(!html.contains("id=\"revoke-"), "nothing left to revoke");
    assert_eq!(app.models_status(&secret).await, StatusCode::UNAUTHORIZED);

    // Sign out ends the session on the server.
    let token = b.session_token();
    let html = b.page("/").await;
    let r = b.post("/logout", &[("csrf", &field(&html, "csrf"))]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login");
    assert_eq!(location(&b.get("/").await), "/login");
    assert_eq!(
        app.get("/api/v1/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Signed out, a valid form token of the pre-session secret does not make a session.
    let html = b.page("/login").await;
    let r = b
        .post(
            "/keys",
            &[
                ("csrf", &field(&html, "csrf")),
                ("org", &org),
                ("name", "k"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login");

    // The server's log lines; the test client's cookie jar logs what it stores.
    let logs: Vec<String> = captured_logs()
        .lines()
        .filter(|l| !l.contains("cookie_store"))
        .map(str::to_owned)
        .collect();
    for needle in [&secret, &token, PASSWORD] {
        assert!(
            !logs.iter().any(|l| l.contains(needle)),
            "a secret was logged"
        );
    }
}

/// The organization's keys, read through the JSON API.
async fn keys_of(app: &TestApp, token: &str, org: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/orgs/{org}/keys"), token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["data"].as_array().unwrap().clone()
}

async fn forms_without_the_right_token_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);
    b.sign_up("bob@example.com", "Bob").await;
    b.sign_in("bob@example.com").await;
    let html = b.page("/keys").await;
    let org = field(&html, "org");
    let good = field(&html, "csrf");

    // Another browser's token is no good here.
    let other = Browser::new(&app);
    other.sign_up("eve@example.com", "Eve").await;
    other.sign_in("eve@example.com").await;
    let foreign = field(&other.page("/keys").await, "csrf");

    for form in [
        vec![("org", org.as_str()), ("name", "k")],
        vec![("csrf", ""), ("org", &org), ("name", "k")],
        vec![("csrf", "not-the-token"), ("org", &org), ("name", "k")],
        vec![("csrf", &foreign), ("org", &org), ("name", "k")],
    ] {
        let r = b.post("/keys", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let html = r.text().await.unwrap();
        assert_eq!(text_of(&html, "error-code"), "csrf_failed");
    }
    let token = b.session_token();
    assert!(keys_of(&app, &token, &org).await.is_empty());

    // Sign-out and sign-in forms are covered too.
    let r = b.post("/logout", &[("csrf", "x")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/me", &token).await.status(), StatusCode::OK);
    let fresh = Browser::new(&app);
    let r = fresh
        .post(
            "/login",
            &[("email", "bob@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(fresh.jar.cookies(&app.url("/").parse().unwrap()).is_none());

    // The right token works.
    let r = b
        .post("/keys", &[("csrf", &good), ("org", &org), ("name", "k")])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(keys_of(&app, &token, &org).await.len(), 1);
}

async fn cross_site_posts_are_refused(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);
    b.sign_up("cy@example.com", "Cy").await;
    b.sign_in("cy@example.com").await;
    let html = b.page("/keys").await;
    let (csrf, org) = (field(&html, "csrf"), field(&html, "org"));
    let form = [("csrf", csrf.as_str()), ("org", &org), ("name", "k")];

    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
    ] {
        let r = b
            .client
            .post(app.url("/keys"))
            .header(header, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{header}: {value}");
    }
    let token = b.session_token();
    assert!(keys_of(&app, &token, &org).await.is_empty());

    let r = b
        .client
        .post(app.url("/keys"))
        .header("sec-fetch-site", "same-origin")
        .header("origin", app.url(""))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn language_from_accept_language_and_the_cookie(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);
    let zh = |path: &str| {
        b.client
            .get(app.url(path))
            .header(ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9,en;q=0.8")
            .send()
    };

    let html = b.page("/login").await;
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("Sign in to AI Hub"));

    let html = zh("/login").await.unwrap().text().await.unwrap();
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(html.contains("登录 AI Hub"));
    assert!(!html.contains("Sign in to AI Hub"));

    // The switcher remembers the choice and goes back; the cookie beats the header.
    let r = b.get("/lang/en?next=/signup").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/signup");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("lang=en;") && cookie.contains("Max-Age="));
    let html = zh("/login").await.unwrap().text().await.unwrap();
    assert!(html.contains("Sign in to AI Hub"));

    let r = b.get("/lang/zh-CN?next=https://evil.example").await;
    assert_eq!(location(&r), "/", "no open redirect");
    let html = b.page("/login").await;
    assert!(html.contains("登录 AI Hub"));
    assert_eq!(b.get("/lang/fr").await.status(), StatusCode::NOT_FOUND);

    // Errors are translated as well.
    let r = b.post("/keys", &[("name", "k")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("表单已过期"));
}

async fn pages_and_assets_carry_the_right_headers(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);
    let r = b.get("/login").await;
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("aihub_csrf=") && cookie.contains("HttpOnly"));
    let html = r.text().await.unwrap();
    for path in ["/login", "/signup", "/"] {
        let r = b.get(path).await;
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    }
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline code"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external asset"
    );

    for (marker, content_type) in [
        ("href=\"/assets/app.css", "text/css"),
        ("src=\"/assets/app.js", "text/javascript"),
    ] {
        let start = html.find(marker).unwrap() + marker.find('/').unwrap();
        let len = html[start..].find('"').unwrap();
        let url = &html[start..start + len];
        let r = b.get(url).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        assert_eq!(
            r.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(r.headers().contains_key(CONTENT_SECURITY_POLICY));
    }
    assert_eq!(
        b.get("/assets/nope.css").await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn values_are_escaped(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let b = Browser::new(&app);
    let evil = "<script>alert(1)</script>";
    b.sign_up("mal@example.com", evil).await;
    b.sign_in("mal@example.com").await;
    let html = b.page("/").await;
    assert_eq!(
        text_of(&html, "user-name"),
        "&#60;script&#62;alert(1)&#60;/script&#62;"
    );
    assert!(!html.contains(evil));

    let keys = b.page("/keys").await;
    let (csrf, org) = (field(&keys, "csrf"), field(&keys, "org"));
    let r = b
        .post(
            "/keys",
            &[("csrf", &csrf), ("org", &org), ("name", "\"><img src=x>")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = b.page("/keys").await;
    assert!(!html.contains("<img src=x>"));
    assert!(html.contains("&#34;&#62;&#60;img src=x&#62;"));
}

async fn viewers_cannot_create_keys(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let r = app
        .post("/api/v1/orgs", &owner.token, json!({"name": "Shared"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let shared = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            &format!("/api/v1/orgs/{shared}/keys"),
            &owner.token,
            json!({"name": "owner's"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let owner_key_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let b = Browser::new(&app);
    b.sign_up("viewer@example.com", "Vi").await;
    b.sign_in("viewer@example.com").await;
    let token = b.session_token();
    let me: Value = app.get("/api/v1/me", &token).await.json().await.unwrap();
    let viewer_id = me["id"].as_str().unwrap().parse().unwrap();
    app.state
        .services
        .store
        .add_member(shared.parse().unwrap(), viewer_id, Role::Viewer, now())
        .await
        .unwrap();

    // The switcher lists both organizations; the shared one shows keys but no create form and
    // no revoke link.
    let html = b.page(&format!("/keys?org={shared}")).await;
    assert!(html.contains("id=\"org-switcher\""));
    assert!(html.contains("Shared"));
    assert!(html.contains("owner&#39;s"));
    assert!(html.contains("id=\"cannot-create\""));
    assert!(!html.contains("id=\"create-key\""));
    assert!(!html.contains("id=\"revoke-"));
    let csrf = field(&html, "csrf");

    // Forged posts get the service's refusal as a page, and change nothing.
    let r = b
        .post("/keys", &[("csrf", &csrf), ("org", &shared), ("name", "k")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = r.text().await.unwrap();
    assert_eq!(text_of(&html, "error-code"), "forbidden");
    assert!(html.contains("id=\"sign-out\""), "still signed in");
    let r = b
        .post(
            &format!("/keys/{owner_key_id}/revoke"),
            &[("csrf", &csrf), ("org", &shared)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let keys = keys_of(&app, &owner.token, &shared).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["revoked"], false);

    // An organization the viewer is not in does not exist for them.
    let r = b.get(&format!("/keys?org={}", owner.org_id)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(text_of(&r.text().await.unwrap(), "error-code"), "not_found");
}

/// The link of an invitation e-mail: a signed-out invitee is sent to sign in and back; the page
/// accepts (the organization opens with the invited role) or declines; a used link is refused
/// with a page that says so.
async fn an_invitation_link_is_accepted_or_declined_in_the_browser(kind: BackendKind) {
    let smtp = aihub_mock_upstream::smtp::SmtpSink::start().await.unwrap();
    let port = smtp.port();
    let app = spawn_app_with(kind, |c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = port;
        c.smtp.security = aihub_core::config::SmtpSecurity::None;
        c.smtp.from = "AI Hub <noreply@aihub.test>".into();
        c.server.public_url = Some("https://hub.example.com".into());
    })
    .await;
    let owner = app.signup("owner@example.com").await;
    let mut tokens = Vec::new();
    for (n, name) in ["Accepting Org", "Declining Org"].into_iter().enumerate() {
        let r = app
            .post("/api/v1/orgs", &owner.token, json!({"name": name}))
            .await;
        let org = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .post(
                &format!("/api/v1/orgs/{org}/invitations"),
                &owner.token,
                json!({"email": "guest@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let mails = smtp.wait_for(n + 1, Duration::from_secs(10)).await.unwrap();
        let text = mails[n].data.replace("=\r\n", "").replace("=3D", "=");
        let link = "https://hub.example.com/invitations/accept?token=";
        let at = text.find(link).unwrap() + link.len();
        let token: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        tokens.push((org, token));
    }

    let b = Browser::new(&app);
    b.sign_up("guest@example.com", "Guest").await;
    let (org, token) = &tokens[0];
    let path = format!("/invitations/accept?token={token}");
    let r = b.get(&path).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/login?next="), "{}", location(&r));
    b.sign_in("guest@example.com").await;

    let html = b.page(&path).await;
    assert!(html.contains("id=\"accept-invitation\""));
    let csrf = field(&html, "csrf");
    assert_eq!(field(&html, "token"), *token);
    let r = b
        .post("/invitations/accept", &[("csrf", &csrf), ("token", token)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/?org={org}"));
    let html = b.page(&format!("/?org={org}")).await;
    assert!(html.contains("Accepting Org"));
    let members: Value = app
        .get(&format!("/api/v1/orgs/{org}/members"), &owner.token)
        .await
        .json()
        .await
        .unwrap();
    let member = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "guest@example.com")
        .unwrap()
        .clone();
    assert_eq!(member["role"], "viewer");

    // The same link again: answered already.
    let r = b
        .post("/invitations/accept", &[("csrf", &csrf), ("token", token)])
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(r.text().await.unwrap().contains("no longer valid"));

    // Declining the other one leaves the guest outside that organization.
    let (other, token) = &tokens[1];
    let r = b
        .post("/invitations/decline", &[("csrf", &csrf), ("token", token)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = b.get(&format!("/?org={other}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Without the form token nothing is accepted.
    let r = b
        .post("/invitations/accept", &[("token", tokens[1].1.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
