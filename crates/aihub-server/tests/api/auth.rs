//! Accounts: registration, sign-in, sessions, sign-out, password change, throttling.

use std::time::{Duration, Instant};

use aihub_core::Email;
use aihub_store::BackendKind;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, api_tests, error_code, spawn_app, spawn_app_with};

api_tests!(
    register_creates_user_and_personal_org,
    registration_rejects_bad_input,
    registration_can_be_turned_off,
    passwords_are_stored_as_argon2id,
    login_returns_token_cookie_and_user,
    secure_cookie_over_https,
    unknown_email_and_wrong_password_look_the_same,
    session_cookie_authenticates_and_csrf_is_refused,
    logout_ends_the_session,
    password_change_ends_other_sessions,
    throttling_delays_but_never_locks_out,
    idle_sessions_end,
    anonymous_callers_are_refused,
);

async fn register_creates_user_and_personal_org(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({ "email": " Alice@Example.com ", "password": PASSWORD, "name": "Alice 张" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert_eq!(body["user"]["name"], "Alice 张");
    assert_eq!(body["user"]["is_platform_admin"], false);
    assert_eq!(body["org"]["role"], "owner");
    assert_eq!(body["org"]["is_personal"], true);
    assert!(body["user"].get("password_hash").is_none());

    let token = app.token("alice@example.com", PASSWORD).await;
    let orgs: Value = app.get("/api/v1/orgs", &token).await.json().await.unwrap();
    assert_eq!(orgs["data"].as_array().unwrap().len(), 1);
    assert_eq!(orgs["data"][0]["id"], body["org"]["id"]);
    assert_eq!(orgs["data"][0]["role"], "owner");
    let me: Value = app.get("/api/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["id"], body["user"]["id"]);
    let org: Value = app
        .get(
            &format!("/api/v1/orgs/{}", body["org"]["id"].as_str().unwrap()),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(org["name"], "Alice 张's organization");
}

async fn registration_rejects_bad_input(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let post = |body: String, ct: Option<&'static str>| {
        let mut r = app.client.post(app.url("/api/v1/auth/register")).body(body);
        if let Some(ct) = ct {
            r = r.header(header::CONTENT_TYPE, ct);
        }
        r.send()
    };
    let json_ct = Some("application/json");
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"email": "nope", "password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            json!({"email": "a@b.co", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_password",
        ),
        (
            json!({"email": "a@b.co", "password": "x".repeat(129)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_password",
        ),
        (
            json!({"email": "a@b.co", "password": 12345678}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"email": "a@b.co"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"email": "a@b.co", "password": PASSWORD, "name": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        // Mass assignment: privileged fields are refused, not persisted.
        (
            json!({"email": "a@b.co", "password": PASSWORD, "is_platform_admin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"email": "a@b.co", "password": PASSWORD, "role": "admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"email": "a@b.co", "password": PASSWORD, "org_id": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(body.to_string(), json_ct).await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }
    let r = post("{not json".into(), json_ct).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "invalid_json");
    let r = post(
        json!({"email": "a@b.co", "password": PASSWORD}).to_string(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(r).await, "unsupported_media_type");

    // A 1 MiB password is refused before it is hashed, and fast.
    let started = Instant::now();
    let huge = json!({"email": "a@b.co", "password": "x".repeat(1 << 20)}).to_string();
    let r = post(huge, json_ct).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "payload_too_large");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Nothing above created an account.
    assert!(
        app.state
            .services
            .store
            .user_by_email(&Email::parse("a@b.co").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // Duplicate e-mail, in any case.
    assert_eq!(
        app.register("dup@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let r = app.register("DUP@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "email_taken");
    // A 64-character Unicode passphrase works.
    let r = app.register("uni@example.com", &"密".repeat(64)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        app.login("uni@example.com", &"密".repeat(64))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn registration_can_be_turned_off(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| c.auth.allow_registration = false).await;
    let r = app.register("a@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "registration_disabled");
}

async fn passwords_are_stored_as_argon2id(kind: BackendKind) {
    let app = spawn_app(kind).await;
    app.signup("hash@example.com").await;
    let user = app
        .state
        .services
        .store
        .user_by_email(&Email::parse("hash@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "stored hash is not argon2id with m=19456,t=2,p=1: {}",
        user.password_hash
            .split('$')
            .take(4)
            .collect::<Vec<_>>()
            .join("$")
    );
    assert!(!user.password_hash.contains(PASSWORD));
}

async fn login_returns_token_cookie_and_user(kind: BackendKind) {
    let app = spawn_app(kind).await;
    app.signup("bob@example.com").await;
    let r = app.login("BOB@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("aihub-sess-"));
    assert!(body["expires_at"].as_str().is_some());
    assert_eq!(body["user"]["email"], "bob@example.com");
    assert!(
        cookie.starts_with(&format!("aihub_session={token};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP without secure_cookies: {cookie}"
    );
    // Each login is a new session.
    let second = app.token("bob@example.com", PASSWORD).await;
    assert_ne!(second, token);
}

async fn secure_cookie_over_https(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| c.server.secure_cookies = true).await;
    app.signup("s@example.com").await;
    let r = app.login("s@example.com", PASSWORD).await;
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-aihub_session="), "{cookie}");
    assert!(cookie.contains("; Secure"));
    assert!(r.headers().get(header::STRICT_TRANSPORT_SECURITY).is_some());
}

async fn unknown_email_and_wrong_password_look_the_same(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| c.auth.login_throttle.account_free_attempts = 100).await;
    app.signup("known@example.com").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        let a = app
            .login("known@example.com", &format!("wrong password {i}"))
            .await;
        known.push(t.elapsed());
        let t = Instant::now();
        let b = app
            .login(
                &format!("ghost{i}@example.com"),
                &format!("wrong password {i}"),
            )
            .await;
        unknown.push(t.elapsed());
        assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(b.status(), StatusCode::UNAUTHORIZED);
        let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
        assert_eq!(a, b, "same body for unknown account and wrong password");
        assert_eq!(a["error"]["code"], "invalid_credentials");
    }
    // Both paths run one argon2 verification (tens of ms); without the dummy verification an
    // unknown account would answer in about a millisecond. The fastest of 7 interleaved tries
    // is the figure least disturbed by other tests running in parallel.
    let (k, u) = (
        known.iter().min().unwrap().as_secs_f64(),
        unknown.iter().min().unwrap().as_secs_f64(),
    );
    assert!(
        u > k / 3.0 && u < k * 3.0,
        "fastest known {k:.4}s vs unknown {u:.4}s"
    );
    // Malformed e-mail: same answer too.
    let r = app.login("not-an-email", "whatever password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(r).await, "invalid_credentials");
}

async fn session_cookie_authenticates_and_csrf_is_refused(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("c@example.com").await;
    let cookie = format!("aihub_session={}", who.token);
    let me = app
        .client
        .get(app.url("/api/v1/me"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let keys_path = format!("/api/v1/orgs/{}/keys", who.org_id);
    let cross_site = [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ];
    for (name, value) in cross_site {
        let r = app
            .client
            .post(app.url(&keys_path))
            .header(header::COOKIE, &cookie)
            .header(name, value)
            .json(&json!({"name": "forged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert_eq!(error_code(r).await, "csrf_failed");
    }
    // A form post (not JSON) changes nothing either.
    let r = app
        .client
        .post(app.url(&keys_path))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("name=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let list: Value = app.get(&keys_path, &who.token).await.json().await.unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "no forged key was created"
    );

    // Same-origin cookie requests work.
    let r = app
        .client
        .post(app.url(&keys_path))
        .header(header::COOKIE, &cookie)
        .header("origin", format!("http://{}", app.addr))
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Bearer tokens are not subject to the origin check (not sent automatically by browsers).
    let r = app
        .req(Method::POST, &keys_path, Some(&who.token))
        .header("origin", "https://elsewhere.example")
        .json(&json!({"name": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn logout_ends_the_session(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("d@example.com").await;
    let other = app.token("d@example.com", PASSWORD).await;
    let r = app
        .req(Method::POST, "/api/v1/auth/logout", Some(&who.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = r
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cleared.contains("Max-Age=0"));
    let r = app.get("/api/v1/me", &who.token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(r).await, "unauthorized");
    // Logging out again with the dead token: 401, not a crash.
    let r = app
        .req(Method::POST, "/api/v1/auth/logout", Some(&who.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Only that session ended.
    assert_eq!(app.get("/api/v1/me", &other).await.status(), StatusCode::OK);
}

async fn password_change_ends_other_sessions(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("e@example.com").await;
    let s2 = app.token("e@example.com", PASSWORD).await;
    let new = "a brand new passphrase";

    let r = app
        .post(
            "/api/v1/me/password",
            &who.token,
            json!({"current_password": "wrong one!", "new_password": new}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "wrong_password");
    let r = app
        .post(
            "/api/v1/me/password",
            &who.token,
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_password");
    assert_eq!(
        app.get("/api/v1/me", &s2).await.status(),
        StatusCode::OK,
        "failed changes end nothing"
    );

    let r = app
        .post(
            "/api/v1/me/password",
            &who.token,
            json!({"current_password": PASSWORD, "new_password": new}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/me", &who.token).await.status(),
        StatusCode::OK,
        "the caller's session stays"
    );
    assert_eq!(
        app.get("/api/v1/me", &s2).await.status(),
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );
    assert_eq!(
        app.login("e@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("e@example.com", new).await.status(),
        StatusCode::OK
    );
}

async fn throttling_delays_but_never_locks_out(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| {
        let t = &mut c.auth.login_throttle;
        t.account_free_attempts = 3;
        t.ip_free_attempts = 1000;
        t.base_delay_secs = 1;
        t.max_delay_secs = 2;
    })
    .await;
    app.signup("victim@example.com").await;
    app.signup("bystander@example.com").await;
    for _ in 0..4 {
        let r = app.login("victim@example.com", "guess guess guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // The fourth failure started a delay: even the right password waits.
    let r = app.login("victim@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(r).await, "too_many_attempts");
    // Other accounts are unaffected.
    assert_eq!(
        app.login("bystander@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    // Keep guessing: the delay grows but is capped at max_delay_secs (2 s).
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        app.login("victim@example.com", "guess again!!")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app.login("victim@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry <= 2, "capped: {retry}");
    // After waiting, the real user gets in, and that clears the account's record.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        app.login("victim@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("victim@example.com", "one typo here")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("victim@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

async fn idle_sessions_end(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| c.auth.session_idle_minutes = 0).await;
    app.signup("idle@example.com").await;
    let token = app.token("idle@example.com", PASSWORD).await;
    assert_eq!(
        app.get("/api/v1/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn anonymous_callers_are_refused(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("f@example.com").await;
    let (key_id, api_key) = app.create_key(&who, json!({"name": "k"})).await;
    let org = &who.org_id;
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/me".into()),
        (Method::POST, "/api/v1/me/password".into()),
        (Method::POST, "/api/v1/auth/logout".into()),
        (Method::GET, "/api/v1/orgs".into()),
        (Method::GET, format!("/api/v1/orgs/{org}")),
        (Method::GET, format!("/api/v1/orgs/{org}/keys")),
        (Method::POST, format!("/api/v1/orgs/{org}/keys")),
        (Method::GET, format!("/api/v1/orgs/{org}/keys/{key_id}")),
        (Method::PATCH, format!("/api/v1/orgs/{org}/keys/{key_id}")),
        (Method::DELETE, format!("/api/v1/orgs/{org}/keys/{key_id}")),
        (
            Method::POST,
            format!("/api/v1/orgs/{org}/keys/{key_id}/rotate"),
        ),
        (Method::GET, format!("/api/v1/orgs/{org}/usage")),
        (Method::GET, format!("/api/v1/orgs/{org}/usage/requests")),
        (Method::GET, "/api/v1/admin/users".into()),
        (Method::GET, "/api/v1/admin/providers".into()),
        (Method::POST, "/api/v1/admin/models".into()),
        (Method::GET, "/api/v1/admin/prices".into()),
        (
            Method::POST,
            format!("/api/v1/admin/users/{}/disable", who.user_id),
        ),
    ];
    let bad_credentials: [Option<&str>; 4] = [
        None,
        Some("aihub-sess-000000000000000000000000000000000000000000"),
        Some("garbage"),
        // An API key is not a session.
        Some(&api_key),
    ];
    let mut attempts = 0;
    for (method, path) in &routes {
        for cred in bad_credentials {
            let r = app
                .req(method.clone(), path, cred)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {cred:?}"
            );
            assert_eq!(error_code(r).await, "unauthorized");
            attempts += 1;
        }
    }
    assert_eq!(attempts, routes.len() * 4);
    // Nothing changed.
    assert_eq!(app.models_status(&api_key).await, StatusCode::OK);
}
