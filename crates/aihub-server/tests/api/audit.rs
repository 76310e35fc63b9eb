//! The audit log over HTTP: an organization's records listed newest first with every filter and
//! cursor pages; CSV and JSON exports holding exactly the listed records; who may read which
//! chain; sign-in attempts with where they came from; and records of key, limit, budget,
//! catalog, plan and user changes that name what changed and never hold a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use aihub_core::Role;
use aihub_store::BackendKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, Signed, TestApp, api_tests, error_code, request_id, spawn_app, spawn_app_with,
};
use crate::limits::join;

api_tests!(
    org_log_lists_filters_and_pages,
    exports_hold_exactly_the_listed_records,
    audit_log_access_follows_roles,
    sign_in_attempts_are_recorded_with_the_client,
    changes_are_recorded_without_secrets,
);

/// Every record under `path` (a list route with its query), following cursors, newest first.
async fn all(app: &TestApp, path: &str, token: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=100&cursor={c}"),
            None => format!("{path}{sep}limit=100"),
        };
        let r = app.get(&url, token).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let page: Value = r.json().await.unwrap();
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn actions(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect()
}

fn seqs(records: &[Value]) -> Vec<i64> {
    records.iter().map(|r| r["seq"].as_i64().unwrap()).collect()
}

/// Creates something and returns the `id` of what was created.
async fn created(r: reqwest::Response) -> String {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Keeps successive records apart in time, so time filters have something to separate.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// An organization with seven changes: the owner creates three org limits, edits the first and
/// deletes the second; an Admin creates a budget and edits it.
struct Scene {
    owner: Signed,
    admin: Signed,
    limits: Vec<String>,
    budget: String,
    /// The `x-request-id` of the request that edited the first limit.
    update_request: String,
}

async fn scene(app: &TestApp) -> Scene {
    let owner = app.signup("owner@example.com").await;
    let admin = app.signup("admin@example.com").await;
    join(app, &owner.org_id, &admin, Role::Admin).await;
    let base = format!("/api/v1/orgs/{}", owner.org_id);
    let mut limits = Vec::new();
    for model in ["m1", "m2", "m3"] {
        let r = app
            .post(
                &format!("{base}/limits"),
                &owner.token,
                json!({"scope_type": "org", "model": model, "rpm": 10}),
            )
            .await;
        limits.push(created(r).await);
        tick().await;
    }
    let r = app
        .patch(
            &format!("{base}/limits/{}", limits[0]),
            &owner.token,
            json!({"rpm": 20}),
        )
        .await;
    let update_request = request_id(&r);
    assert_eq!(r.status(), StatusCode::OK);
    tick().await;
    let r = app
        .delete(&format!("{base}/limits/{}", limits[1]), &owner.token)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tick().await;
    let r = app
        .post(
            &format!("{base}/budgets"),
            &admin.token,
            json!({"scope_type": "org", "amount": "25", "period": "monthly"}),
        )
        .await;
    let budget = created(r).await;
    tick().await;
    let r = app
        .patch(
            &format!("{base}/budgets/{budget}"),
            &admin.token,
            json!({"name": "team spend"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    Scene {
        owner,
        admin,
        limits,
        budget,
        update_request,
    }
}

async fn org_log_lists_filters_and_pages(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = scene(&app).await;
    let base = format!("/api/v1/orgs/{}/audit-logs", s.owner.org_id);
    let token = &s.owner.token;

    let records = all(&app, &base, token).await;
    assert_eq!(
        actions(&records),
        [
            "budget.update",
            "budget.create",
            "limit.delete",
            "limit.update",
            "limit.create",
            "limit.create",
            "limit.create"
        ]
    );
    assert_eq!(seqs(&records), [7, 6, 5, 4, 3, 2, 1], "newest first");
    // The chain: each record links to the one before it, the first to zeros.
    assert_eq!(records[6]["prev_hash"], "0".repeat(64));
    for pair in records.windows(2) {
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
        let hash = pair[0]["hash"].as_str().unwrap();
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let update = &records[3];
    assert_eq!(update["org_id"], s.owner.org_id.as_str());
    assert_eq!(
        update["actor"],
        json!({"type": "user", "id": s.owner.user_id, "label": "owner@example.com"})
    );
    assert_eq!(
        update["target"],
        json!({"type": "limit", "id": s.limits[0]})
    );
    assert_eq!(
        (
            update["before"]["rpm"].clone(),
            update["after"]["rpm"].clone()
        ),
        (json!(10), json!(20))
    );
    assert_eq!(update["ip"], "127.0.0.1");
    assert_eq!(update["request_id"], s.update_request.as_str());
    assert!(records[4]["before"].is_null(), "a creation has no before");
    assert_eq!(records[4]["after"]["model"], "m3");
    assert!(records[2]["after"].is_null(), "a deletion has no after");
    assert_eq!(records[2]["before"]["id"], s.limits[1].as_str());
    assert_eq!(records[0]["actor"]["id"], s.admin.user_id.as_str());

    // Each filter, alone and together.
    let q = |query: &str| format!("{base}?{query}");
    let only = |query: &'static str, want: Vec<i64>| {
        let app = &app;
        async move {
            let got = all(app, &q(query), token).await;
            assert_eq!(seqs(&got), want, "{query}");
        }
    };
    only("action=limit.create", vec![3, 2, 1]).await;
    only("action=limit.", vec![5, 4, 3, 2, 1]).await;
    only("action=budget.update", vec![7]).await;
    only("action=org.", vec![]).await;
    only("target_type=budget", vec![7, 6]).await;
    let got = all(&app, &q(&format!("actor_id={}", s.admin.user_id)), token).await;
    assert_eq!(seqs(&got), [7, 6]);
    let got = all(&app, &q(&format!("target_id={}", s.limits[0])), token).await;
    assert_eq!(seqs(&got), [4, 1]);
    let got = all(&app, &q(&format!("target_id={}", s.budget)), token).await;
    assert_eq!(seqs(&got), [7, 6]);
    let got = all(
        &app,
        &q(&format!("actor_id={}&action=limit.", s.owner.user_id)),
        token,
    )
    .await;
    assert_eq!(seqs(&got), [5, 4, 3, 2, 1]);
    // `since` is inclusive, `until` exclusive.
    let at = |seq: usize| records[7 - seq]["at"].as_str().unwrap().to_owned();
    let got = all(&app, &q(&format!("since={}&until={}", at(3), at(5))), token).await;
    assert_eq!(seqs(&got), [4, 3]);
    let got = all(&app, &q(&format!("since={}", at(6))), token).await;
    assert_eq!(seqs(&got), [7, 6]);
    let got = all(&app, &q(&format!("until={}", at(2))), token).await;
    assert_eq!(seqs(&got), [1]);
    // Empty parameters filter nothing.
    assert_eq!(all(&app, &q("action=&target_id="), token).await.len(), 7);

    // Cursor pages: no record twice, none left out.
    let mut paged = Vec::new();
    let mut url = q("limit=3");
    let mut sizes = Vec::new();
    loop {
        let page: Value = app.get(&url, token).await.json().await.unwrap();
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        paged.extend(data.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = q(&format!("limit=3&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(paged, records);
    let page: Value = app
        .get(&q("action=limit.&limit=2&cursor=4"), token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seqs(page["data"].as_array().unwrap()), [3, 2]);
    assert_eq!(page["next_cursor"], "2");

    // Bad filters speak the API's error shape.
    for (query, status, code) in [
        ("action=Limit.create", 422, "invalid_filter"),
        ("action=limit", 422, "invalid_filter"),
        ("action=limit.%25", 422, "invalid_filter"),
        ("target_type=api%20key", 422, "invalid_filter"),
        ("target_id=a%0Ab", 422, "invalid_filter"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            422,
            "invalid_filter",
        ),
        ("since=yesterday", 400, "invalid_query"),
        ("actor_id=someone", 400, "invalid_query"),
        ("cursor=last", 400, "invalid_query"),
        ("verbose=1", 400, "invalid_query"),
    ] {
        let r = app.get(&q(query), token).await;
        assert_eq!(r.status().as_u16(), status, "{query}");
        assert_eq!(error_code(r).await, code, "{query}");
        let r = app.get(&format!("{base}/export?{query}"), token).await;
        let want = if query.starts_with("cursor") {
            400 // not a parameter of the export
        } else {
            status
        };
        assert_eq!(r.status().as_u16(), want, "export {query}");
    }
    let r = app.get(&format!("{base}/export?format=xml"), token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "invalid_query");
}

/// Splits RFC 4180 text into rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the export ends with CRLF"
    );
    rows
}

/// A cell as the CSV export writes it: text, with formula starters defused.
fn cell(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    }
}

async fn exports_hold_exactly_the_listed_records(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = scene(&app).await;
    let org = &s.owner.org_id;
    let base = format!("/api/v1/orgs/{org}/audit-logs");
    // A change made by a client whose user agent a spreadsheet would run as a formula, and one
    // whose user agent needs quoting.
    for (model, ua) in [
        ("m4", r#"=HYPERLINK("http://evil.example","click")"#),
        ("m5", r#"agent "quoted", with comma"#),
    ] {
        let r = app
            .req(
                Method::POST,
                &format!("/api/v1/orgs/{org}/limits"),
                Some(&s.owner.token),
            )
            .header("user-agent", ua)
            .json(&json!({"scope_type": "org", "model": model, "tpm": 1000}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut listed = all(&app, &base, &s.owner.token).await;
    listed.reverse();
    assert_eq!(listed.len(), 9);

    // JSON (the default format): one array, oldest first, equal to the listed records.
    for url in [
        format!("{base}/export"),
        format!("{base}/export?format=json"),
    ] {
        let r = app.get(&url, &s.owner.token).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/json");
        let disposition = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            disposition.starts_with(&format!("attachment; filename=\"audit-log-{org}-"))
                && disposition.ends_with(".json\""),
            "{disposition}"
        );
        let exported: Vec<Value> = r.json().await.unwrap();
        assert_eq!(exported, listed);
    }

    // CSV: a header, then one row per record with the same values.
    let r = app
        .get(&format!("{base}/export?format=csv"), &s.owner.token)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with(".csv\"")
    );
    let text = r.text().await.unwrap();
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0],
        [
            "id",
            "seq",
            "at",
            "org_id",
            "actor_type",
            "actor_id",
            "actor_label",
            "action",
            "target_type",
            "target_id",
            "before",
            "after",
            "ip",
            "user_agent",
            "request_id",
            "hash",
            "prev_hash"
        ]
    );
    assert_eq!(rows.len(), listed.len() + 1);
    for (row, rec) in rows[1..].iter().zip(&listed) {
        let want: Vec<String> = [
            &rec["id"],
            &rec["seq"],
            &rec["at"],
            &rec["org_id"],
            &rec["actor"]["type"],
            &rec["actor"]["id"],
            &rec["actor"]["label"],
            &rec["action"],
            &rec["target"]["type"],
            &rec["target"]["id"],
        ]
        .into_iter()
        .map(cell)
        .collect();
        assert_eq!(row[..10], want[..], "{rec}");
        for (i, state) in [(10, &rec["before"]), (11, &rec["after"])] {
            if state.is_null() {
                assert_eq!(row[i], "");
            } else {
                assert_eq!(serde_json::from_str::<Value>(&row[i]).unwrap(), *state);
            }
        }
        let tail: Vec<String> = [
            &rec["ip"],
            &rec["user_agent"],
            &rec["request_id"],
            &rec["hash"],
            &rec["prev_hash"],
        ]
        .into_iter()
        .map(cell)
        .collect();
        assert_eq!(row[12..], tail[..], "{rec}");
    }
    // The formula is defused, the quoted agent survives intact.
    assert_eq!(rows[8][13], r#"'=HYPERLINK("http://evil.example","click")"#);
    assert_eq!(
        listed[7]["user_agent"],
        r#"=HYPERLINK("http://evil.example","click")"#
    );
    assert_eq!(rows[9][13], r#"agent "quoted", with comma"#);

    // Filters apply to exports too.
    let r = app
        .get(
            &format!("{base}/export?format=csv&action=limit.create"),
            &s.owner.token,
        )
        .await;
    let rows = parse_csv(&r.text().await.unwrap());
    let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    let want: Vec<&str> = listed
        .iter()
        .filter(|r| r["action"] == "limit.create")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want);
    assert_eq!(want.len(), 5);
    let r = app
        .get(
            &format!("{base}/export?actor_id={}", s.admin.user_id),
            &s.owner.token,
        )
        .await;
    let exported: Vec<Value> = r.json().await.unwrap();
    assert_eq!(actions(&exported), ["budget.create", "budget.update"]);
    // Nothing matches: still a well-formed, empty document.
    let r = app
        .get(&format!("{base}/export?action=org."), &s.owner.token)
        .await;
    assert_eq!(r.json::<Vec<Value>>().await.unwrap(), Vec::<Value>::new());
    let r = app
        .get(
            &format!("{base}/export?format=csv&action=org."),
            &s.owner.token,
        )
        .await;
    assert_eq!(parse_csv(&r.text().await.unwrap()).len(), 1);
}

async fn audit_log_access_follows_roles(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = scene(&app).await;
    let member = app.signup("member@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    let stranger = app.signup("stranger@example.com").await;
    join(&app, &s.owner.org_id, &member, Role::Member).await;
    join(&app, &s.owner.org_id, &viewer, Role::Viewer).await;
    let root = app.platform_admin().await;
    let base = format!("/api/v1/orgs/{}/audit-logs", s.owner.org_id);
    let paths = [
        base.clone(),
        format!("{base}/export"),
        format!("{base}/export?format=csv"),
    ];

    for path in &paths {
        for (who, token) in [
            ("owner", &s.owner.token),
            ("admin", &s.admin.token),
            ("platform admin", &root),
        ] {
            let r = app.get(path, token).await;
            assert_eq!(r.status(), StatusCode::OK, "{who} {path}");
        }
        for (who, token) in [("member", &member.token), ("viewer", &viewer.token)] {
            let r = app.get(path, token).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who} {path}");
            assert_eq!(error_code(r).await, "forbidden");
        }
        let r = app.get(path, &stranger.token).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "stranger {path}");
        let r = app.req(Method::GET, path, None).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "anonymous {path}");
    }
    // The stranger's own organization has its own chain, and none of these records.
    let theirs = all(
        &app,
        &format!("/api/v1/orgs/{}/audit-logs", stranger.org_id),
        &stranger.token,
    )
    .await;
    assert!(theirs.is_empty(), "{theirs:?}");

    // The platform chain: platform admins only; anyone else is told it does not exist, even
    // with a filter that would not parse.
    for path in [
        "/api/v1/admin/audit-logs",
        "/api/v1/admin/audit-logs/export",
        "/api/v1/admin/audit-logs/export?format=csv",
        "/api/v1/admin/audit-logs?action=Bad",
    ] {
        for token in [&s.owner.token, &s.admin.token, &member.token] {
            let r = app.get(path, token).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(error_code(r).await, "not_found");
        }
    }
    let platform = all(&app, "/api/v1/admin/audit-logs", &root).await;
    assert!(platform.iter().all(|r| r["org_id"].is_null()));
    let registered: Vec<&str> = platform
        .iter()
        .filter(|r| r["action"] == "auth.register")
        .map(|r| r["actor"]["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        registered,
        [
            "stranger@example.com",
            "viewer@example.com",
            "member@example.com",
            "admin@example.com",
            "owner@example.com"
        ]
    );
    assert!(
        !actions(&platform).iter().any(|a| a.starts_with("limit.")),
        "organization changes stay in their organization's chain"
    );
    let r = app
        .get(
            "/api/v1/admin/audit-logs/export?action=auth.register",
            &root,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let exported: Vec<Value> = r.json().await.unwrap();
    assert_eq!(exported.len(), 5);
    let r = app.get("/api/v1/admin/audit-logs?action=Bad", &root).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The platform chain's records of `action`, newest first.
async fn platform_records(app: &TestApp, root: &str, action: &str) -> Vec<Value> {
    all(
        app,
        &format!("/api/v1/admin/audit-logs?action={action}"),
        root,
    )
    .await
}

async fn sign_in_attempts_are_recorded_with_the_client(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| {
        c.auth.login_throttle.account_free_attempts = 1;
        c.auth.login_throttle.base_delay_secs = 60;
        c.auth.login_throttle.ip_free_attempts = 1000;
    })
    .await;
    let root = app.platform_admin().await;
    let login = |email: &'static str, password: &'static str, ua: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .header("user-agent", ua)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };

    // Registration, by the new account itself, from its client.
    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("user-agent", "signup-agent/2")
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let reg_request = request_id(&r);
    let body: Value = r.json().await.unwrap();
    let alice = body["user"]["id"].as_str().unwrap().to_owned();
    let rec = &platform_records(&app, &root, "auth.register").await[0];
    assert_eq!(
        rec["actor"],
        json!({"type": "user", "id": alice, "label": "alice@example.com"})
    );
    assert_eq!(rec["target"], json!({"type": "user", "id": alice}));
    assert_eq!(rec["after"]["user"]["email"], "alice@example.com");
    assert_eq!(rec["after"]["personal_org"]["id"], body["org"]["id"]);
    assert_eq!(
        (
            rec["ip"].as_str(),
            rec["user_agent"].as_str(),
            rec["request_id"].as_str()
        ),
        (
            Some("127.0.0.1"),
            Some("signup-agent/2"),
            Some(reg_request.as_str())
        )
    );

    // A successful sign-in.
    let r = login("alice@example.com", PASSWORD, "audit-test/1.0").await;
    assert_eq!(r.status(), StatusCode::OK);
    let ok_request = request_id(&r);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec = platform_records(&app, &root, "auth.login")
        .await
        .into_iter()
        .find(|r| r["request_id"] == ok_request.as_str())
        .expect("a record of the sign-in");
    assert_eq!(
        rec["actor"],
        json!({"type": "user", "id": alice, "label": "alice@example.com"})
    );
    assert_eq!(rec["target"], json!({"type": "user", "id": alice}));
    assert_eq!(rec["ip"], "127.0.0.1");
    assert_eq!(rec["user_agent"], "audit-test/1.0");
    assert!(rec["after"].is_null());

    // A wrong password on an existing account, and an account that does not exist.
    let r = login("alice@example.com", "not the password", "guesser/1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login("nobody@example.com", "whatever it is", "guesser/2").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let failed = platform_records(&app, &root, "auth.login_failed").await;
    assert_eq!(failed.len(), 2);
    assert_eq!(
        failed[1]["actor"],
        json!({"type": "anonymous", "id": alice, "label": "alice@example.com"})
    );
    assert_eq!(failed[1]["target"]["id"], alice.as_str());
    assert_eq!(failed[1]["after"], json!({"reason": "invalid_credentials"}));
    assert_eq!(failed[1]["user_agent"], "guesser/1");
    assert_eq!(
        failed[0]["actor"],
        json!({"type": "anonymous", "id": null, "label": "nobody@example.com"})
    );
    assert_eq!(failed[0]["target"], json!({"type": "user", "id": null}));
    assert_eq!(failed[0]["ip"], "127.0.0.1");

    // Throttled: alice has used her free failure; the next attempt waits, and is recorded.
    let r = login("alice@example.com", "second guess", "guesser/1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login("alice@example.com", PASSWORD, "guesser/1").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let failed = platform_records(&app, &root, "auth.login_failed").await;
    assert_eq!(failed[0]["after"], json!({"reason": "throttled"}));
    assert_eq!(failed[0]["actor"]["label"], "alice@example.com");
    assert_eq!(failed[0]["user_agent"], "guesser/1");

    // A disabled account, with the right password.
    let bob = app.signup("bob@example.com").await;
    let r = app
        .post(
            &format!("/api/v1/admin/users/{}/disable", bob.user_id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = login("bob@example.com", PASSWORD, "bob-agent").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let failed = platform_records(&app, &root, "auth.login_failed").await;
    assert_eq!(failed[0]["after"], json!({"reason": "account_disabled"}));
    assert_eq!(failed[0]["actor"]["id"], bob.user_id.as_str());

    // Signing out.
    let r = app
        .req(Method::POST, "/api/v1/auth/logout", Some(&token))
        .header("user-agent", "audit-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let out = &platform_records(&app, &root, "auth.logout").await[0];
    assert_eq!(out["actor"]["id"], alice.as_str());
    assert_eq!(out["target"], json!({"type": "user", "id": alice}));
    assert_eq!(out["user_agent"], "audit-test/1.0");
    assert!(out["after"]["session_id"].is_string());

    // Every sign-in attempt is in the platform chain, once: the successful ones are root's,
    // alice's above and bob's at sign-up; the failed ones are the five above.
    let logins = platform_records(&app, &root, "auth.").await;
    let count = |a: &str| logins.iter().filter(|r| r["action"] == a).count();
    assert_eq!(
        (
            count("auth.login"),
            count("auth.login_failed"),
            count("auth.register")
        ),
        (3, 5, 2)
    );
}

/// Every record of the platform chain and of `org`'s chain, as exported.
async fn exported(app: &TestApp, root: &str, org: &str, owner: &str) -> (Vec<Value>, String) {
    let mut text = String::new();
    let mut records = Vec::new();
    for (path, token) in [
        ("/api/v1/admin/audit-logs/export".to_owned(), root),
        (format!("/api/v1/orgs/{org}/audit-logs/export"), owner),
    ] {
        let body = app.get(&path, token).await.text().await.unwrap();
        records.extend(serde_json::from_str::<Vec<Value>>(&body).unwrap());
        text.push_str(&body);
        let csv = app
            .get(&format!("{path}?format=csv"), token)
            .await
            .text()
            .await
            .unwrap();
        text.push_str(&csv);
    }
    (records, text)
}

async fn changes_are_recorded_without_secrets(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let owner = app.signup("owner@example.com").await;
    let org = owner.org_id.clone();
    let base = format!("/api/v1/orgs/{org}");
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned(), root.clone(), owner.token.clone()];

    // Keys: create, rotate, revoke.
    let (key, k1) = app.create_key(&owner, json!({"name": "ci"})).await;
    let r = app
        .post(
            &format!("{base}/keys/{key}/rotate"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let k2 = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.extend([k1, k2]);

    // Limits on the key: create, edit, delete.
    let limit = created(
        app.post(
            &format!("{base}/limits"),
            &owner.token,
            json!({"scope_type": "key", "scope_id": key, "rpm": 60}),
        )
        .await,
    )
    .await;
    let r = app
        .patch(
            &format!("{base}/limits/{limit}"),
            &owner.token,
            json!({"rpm": 30}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .delete(&format!("{base}/limits/{limit}"), &owner.token)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Budgets with webhooks: every secret minted is returned once and recorded never.
    let r = app
        .post(
            &format!("{base}/budgets"),
            &owner.token,
            json!({"scope_type": "org", "amount": "10", "webhook_url": "https://hooks.example.com/a"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let with_hook = v["id"].as_str().unwrap().to_owned();
    secrets.push(v["webhook_secret"].as_str().unwrap().to_owned());
    let plain = created(
        app.post(
            &format!("{base}/budgets"),
            &owner.token,
            json!({"scope_type": "key", "scope_id": key, "amount": "5"}),
        )
        .await,
    )
    .await;
    let r = app
        .patch(
            &format!("{base}/budgets/{plain}"),
            &owner.token,
            json!({"webhook_url": "https://hooks.example.com/b"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    secrets.push(v["webhook_secret"].as_str().unwrap().to_owned());
    let r = app
        .post(
            &format!("{base}/budgets/{with_hook}/rotate-secret"),
            &owner.token,
            json!({}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    secrets.push(v["webhook_secret"].as_str().unwrap().to_owned());
    let r = app
        .delete(&format!("{base}/budgets/{plain}"), &owner.token)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .delete(&format!("{base}/keys/{key}"), &owner.token)
        .await;
    assert!(r.status().is_success());

    // The catalog: a provider whose key is read from a file, a model, a price.
    let upstream_key = "upstream-provider-secret-7f3a9c";
    let secrets_dir = app.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    std::fs::write(secrets_dir.join("deep.key"), format!("{upstream_key}\n")).unwrap();
    secrets.push(upstream_key.to_owned());
    let provider = json!({"name": "deep", "kind": "openai", "base_url": "https://api.deep.example/v1", "api_key_file": "deep.key"});
    let r = app.post("/api/v1/admin/providers", &root, provider).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(Method::PUT, "/api/v1/admin/providers/deep", Some(&root))
        .json(&json!({"kind": "openai", "base_url": "https://api2.deep.example/v1", "api_key_file": "deep.key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .post(
            "/api/v1/admin/models",
            &root,
            json!({"name": "deep-chat", "provider": "deep"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(Method::PUT, "/api/v1/admin/models/deep-chat", Some(&root))
        .json(&json!({"provider": "deep", "upstream_model": "deepseek-chat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .post(
            "/api/v1/admin/prices",
            &root,
            json!({"model": "deep-chat", "currency": "USD", "input": "0.27", "output": "1.10"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.delete("/api/v1/admin/models/deep-chat", &root).await;
    assert!(r.status().is_success());
    let r = app.delete("/api/v1/admin/providers/deep", &root).await;
    assert!(r.status().is_success());

    // Plans: create, edit, assign to the organization.
    let plan = created(
        app.post(
            "/api/v1/admin/plans",
            &root,
            json!({"name": "gold", "rpm": 100}),
        )
        .await,
    )
    .await;
    let r = app
        .patch(
            &format!("/api/v1/admin/plans/{plan}"),
            &root,
            json!({"rpm": 200}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .req(
            Method::PUT,
            &format!("/api/v1/admin/orgs/{org}/plan"),
            Some(&root),
        )
        .json(&json!({"plan": "gold"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Users: disable, enable; a password change.
    let other = app.signup("other@example.com").await;
    secrets.push(other.token.clone());
    for verb in ["disable", "enable"] {
        let r = app
            .post(
                &format!("/api/v1/admin/users/{}/{verb}", other.user_id),
                &root,
                json!({}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let new_password = "a brand new passphrase 2026";
    secrets.push(new_password.to_owned());
    let r = app
        .post(
            "/api/v1/me/password",
            &owner.token,
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let (records, text) = exported(&app, &root, &org, &owner.token).await;
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret starting {:?} is in the audit log",
            &secret[..6]
        );
    }
    for fragment in ["$argon2", "sk-aihub-", "aihub-sess-", "whsec_"] {
        assert!(!text.contains(fragment), "{fragment} in the audit log");
    }

    // Exactly one record per change, each in its chain.
    let mut org_actions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut platform_actions: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        let map = if r["org_id"].is_null() {
            &mut platform_actions
        } else {
            assert_eq!(r["org_id"], org.as_str());
            &mut org_actions
        };
        *map.entry(r["action"].as_str().unwrap()).or_default() += 1;
    }
    let want_org: BTreeMap<&str, usize> = [
        ("key.create", 1),
        ("key.rotate", 1),
        ("key.revoke", 1),
        ("limit.create", 1),
        ("limit.update", 1),
        ("limit.delete", 1),
        ("budget.create", 2),
        ("budget.update", 1),
        ("budget.rotate_secret", 1),
        ("budget.delete", 1),
        ("org.plan_assign", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(org_actions, want_org);
    for (action, n) in [
        ("provider.create", 1),
        ("provider.update", 1),
        ("provider.delete", 1),
        ("model.create", 1),
        ("model.update", 1),
        ("model.delete", 1),
        ("price.create", 1),
        ("plan.create", 1),
        ("plan.update", 1),
        ("user.disable", 1),
        ("user.enable", 1),
        ("user.password_change", 1),
    ] {
        assert_eq!(platform_actions.get(action), Some(&n), "{action}");
    }

    // What the records say.
    let find = |action: &str| {
        records
            .iter()
            .find(|r| r["action"] == action)
            .unwrap_or_else(|| panic!("no {action}"))
    };
    let p = find("provider.update");
    assert_eq!(p["target"], json!({"type": "provider", "id": "deep"}));
    assert_eq!(p["before"]["base_url"], "https://api.deep.example/v1");
    assert_eq!(p["after"]["base_url"], "https://api2.deep.example/v1");
    assert_eq!(p["after"]["api_key_file"], "deep.key");
    assert!(p["after"].get("api_key").is_none());
    assert_eq!(find("provider.delete")["before"]["name"], "deep");
    assert_eq!(
        find("model.update")["after"]["upstream_model"],
        "deepseek-chat"
    );
    assert_eq!(find("price.create")["after"]["input_micros"], 270_000);
    assert_eq!(
        (
            find("plan.update")["before"]["rpm"].clone(),
            find("plan.update")["after"]["rpm"].clone()
        ),
        (json!(100), json!(200))
    );
    let assign = find("org.plan_assign");
    assert_eq!(assign["target"], json!({"type": "org", "id": org}));
    assert_eq!(assign["after"]["plan"]["name"], "gold");
    assert!(
        assign["before"]["plan"].is_null(),
        "no default plan in tests"
    );
    let b = find("budget.create");
    assert_eq!(b["after"]["webhook_url"], "https://hooks.example.com/a");
    assert!(b["after"].get("webhook_secret").is_none());
    let disable = find("user.disable");
    assert_eq!(disable["target"]["id"], other.user_id.as_str());
    assert!(disable["before"]["disabled_at"].is_null());
    assert!(disable["after"]["disabled_at"].is_string());
    assert!(disable["after"].get("password_hash").is_none());
    assert_eq!(
        find("user.password_change")["actor"]["id"],
        owner.user_id.as_str()
    );
    assert_eq!(find("limit.update")["before"]["rpm"], 60);
}
