//! The audit log page, driven as a browser: the filters and "older" pages return the right
//! records, the before/after states show (escaped), the CSV and JSON downloads hold the
//! filtered records, Members and Viewers get neither the link nor the page, and it reads in
//! Chinese.

use aihub_core::Role;
use aihub_core::time::now;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{Signed, TestApp, api_tests, spawn_app};
use crate::web_client::{Browser, text_of};

api_tests!(
    owners_filter_page_and_export_the_log,
    members_and_viewers_get_no_audit_page,
);

/// The `seq` of every record row on an audit page, in order.
fn rows(html: &str) -> Vec<i64> {
    html.split("<tr id=\"audit-")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The href of the element with `id`, as a path (entities decoded).
fn href(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\" href=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len]
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

async fn owner_with_keys(app: &TestApp, n: usize) -> (Signed, Vec<String>) {
    let owner = app.signup("owner@example.com").await;
    let mut ids = Vec::new();
    for i in 0..n {
        let (id, _) = app
            .create_key(&owner, json!({"name": format!("key {i}")}))
            .await;
        ids.push(id);
    }
    (owner, ids)
}

async fn owners_filter_page_and_export_the_log(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (owner, ids) = owner_with_keys(&app, 52).await;
    let org = &owner.org_id;
    let b = Browser::new(&app);
    b.sign_in("owner@example.com").await;

    let home = b.page("/").await;
    assert!(home.contains("id=\"nav-audit\""));

    // Newest first, 50 a page, then the older ones: 52 key creations in all, none twice.
    let first = b.page(&format!("/audit?org={org}&action=key.create")).await;
    let page1 = rows(&first);
    assert_eq!(page1.len(), 50);
    assert!(page1.windows(2).all(|w| w[0] > w[1]));
    let older = href(&first, "audit-older");
    assert!(older.contains("action=key.create"), "{older}");
    assert!(older.contains(&format!("cursor={}", page1[49])), "{older}");
    let second = b.page(&older).await;
    let page2 = rows(&second);
    assert_eq!(page2.len(), 2, "{older} {page1:?} {page2:?}");
    assert!(page2.iter().all(|s| *s < page1[49]));
    assert!(!second.contains("id=\"audit-older\""));

    // A noun filter includes them too; a target filter finds exactly one, with its state.
    let html = b.page(&format!("/audit?org={org}&action=key.")).await;
    assert!(rows(&html).len() >= 50);
    let target = &ids[7];
    let html = b
        .page(&format!(
            "/audit?org={org}&target_type=api_key&target_id={target}"
        ))
        .await;
    let found = rows(&html);
    assert_eq!(found.len(), 1);
    assert!(html.contains("key.create"));
    let after = text_of(&html, &format!("audit-after-{}", found[0]));
    assert!(after.contains("key 7"), "{after}");

    // By actor, and by time.
    let html = b
        .page(&format!(
            "/audit?org={org}&action=key.create&actor={}",
            owner.user_id
        ))
        .await;
    assert_eq!(rows(&html).len(), 50);
    let html = b
        .page(&format!(
            "/audit?org={org}&actor=00000000-0000-0000-0000-000000000001"
        ))
        .await;
    assert!(html.contains("id=\"no-audit\""));
    let html = b
        .page(&format!("/audit?org={org}&to=2000-01-01T00:00"))
        .await;
    assert!(html.contains("id=\"no-audit\""));
    let html = b
        .page(&format!(
            "/audit?org={org}&action=key.create&from=2000-01-01T00:00"
        ))
        .await;
    assert_eq!(rows(&html).len(), 50);

    // A bad filter is explained, not run.
    let r = b.get(&format!("/audit?org={org}&action=key")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"error\""));

    // The downloads hold the filtered records, oldest first.
    let csv_link = href(&first, "audit-export-csv");
    let r = b.get(&csv_link).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()[CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(".csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 53, "a header and 52 records");
    assert!(lines[0].starts_with("id,seq,at,"));
    assert!(lines[1..].iter().all(|l| l.contains("key.create")));
    let r = b.get(&href(&first, "audit-export-json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let records: Vec<Value> = r.json().await.unwrap();
    assert_eq!(records.len(), 52);
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    let mut listed: Vec<i64> = page1.iter().chain(&page2).copied().collect();
    listed.reverse();
    assert_eq!(seqs, listed, "the export holds exactly the listed records");

    // Chinese.
    b.get("/lang/zh-CN?next=/").await;
    let html = b.page(&format!("/audit?org={org}")).await;
    assert!(html.contains("审计日志") && html.contains("下载 CSV"));
}

async fn members_and_viewers_get_no_audit_page(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let evil = "<script>alert(1)</script>";
    let r = app
        .post("/api/v1/orgs", &owner.token, json!({"name": evil}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let shared = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The owner sees the organization's creation, its name escaped.
    let b = Browser::new(&app);
    b.sign_in("owner@example.com").await;
    let html = b.page(&format!("/audit?org={shared}")).await;
    assert!(!rows(&html).is_empty());
    assert!(!html.contains(evil));
    assert!(html.contains("&#60;script&#62;"));

    for (email, role) in [
        ("member@example.com", Role::Member),
        ("viewer@example.com", Role::Viewer),
    ] {
        let who = app.signup(email).await;
        app.state
            .services
            .store
            .add_member(
                shared.parse().unwrap(),
                who.user_id.parse().unwrap(),
                role,
                now(),
            )
            .await
            .unwrap();
        let b = Browser::new(&app);
        b.sign_in(email).await;
        let home = b.page(&format!("/?org={shared}")).await;
        assert!(!home.contains("id=\"nav-audit\""), "{email}");
        for path in [
            format!("/audit?org={shared}"),
            format!("/audit/export?org={shared}&format=csv"),
            format!("/audit?org={shared}&chain=platform"),
        ] {
            let r = b.get(&path).await;
            assert!(
                r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::NOT_FOUND,
                "{email} {path}: {}",
                r.status()
            );
            let body = r.text().await.unwrap();
            assert!(!body.contains("org.create"), "{email} {path}");
        }
    }
}
