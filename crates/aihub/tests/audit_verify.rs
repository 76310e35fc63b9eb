//! `aihub audit verify` end to end, on SQLite and (with `AIHUB_TEST_DATABASE_URL`) PostgreSQL:
//! the operator commands leave system records; an untouched log verifies (exit 0); then, with
//! the append-only triggers out of the way as an attacker with database access would do it, an
//! altered record, a deleted middle record and a truncated tail are each found and named
//! (exit 1), per chain and with `--org`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::process::Output;

use aihub_core::OrgId;
use aihub_core::time::now;
use aihub_store::audit::{
    ActorType, AuditFilter, AuditRecord, NewAuditRecord, Order, PLATFORM_CHAIN,
};
use aihub_store::testing::TestDb;
use aihub_store::{BackendKind, Store};
use uuid::Uuid;

#[expect(dead_code, reason = "this test starts no server")]
mod common;

use common::aihub;

const PASSWORD: &str = "verify test password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_altered_deleted_and_truncated_records_sqlite() {
    verify_finds_altered_deleted_and_truncated_records(BackendKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(aihub_pg),
    ignore = "set AIHUB_TEST_DATABASE_URL to run PostgreSQL tests"
)]
async fn verify_finds_altered_deleted_and_truncated_records_postgres() {
    verify_finds_altered_deleted_and_truncated_records(BackendKind::Postgres).await;
}

fn write_config(dir: &Path, db_url: &str) {
    std::fs::write(
        dir.join("aihub.toml"),
        format!("[database]\nurl = \"{db_url}\"\n[log]\nlevel = \"warn\"\n"),
    )
    .unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    aihub(dir)
        .args(args)
        .env("AIHUB_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

/// `aihub audit verify …`: its exit code and standard output.
fn verify(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = run(dir, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "$ aihub {}\n{stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), stdout)
}

fn record(org: Option<OrgId>, action: &str, n: usize) -> NewAuditRecord {
    NewAuditRecord {
        id: Uuid::now_v7(),
        org_id: org,
        at: now(),
        actor_type: ActorType::User,
        actor_id: Some(Uuid::now_v7()),
        actor_label: Some(format!("user{n}@example.com")),
        action: action.to_owned(),
        target_type: "api_key".to_owned(),
        target_id: Some(Uuid::now_v7().to_string()),
        before: Some(format!(r#"{{"name":"key {n}"}}"#)),
        after: Some(format!(r#"{{"name":"key {}"}}"#, n + 1)),
        ip: Some("192.0.2.7".to_owned()),
        user_agent: Some("verify-test".to_owned()),
        request_id: Some(Uuid::now_v7()),
    }
}

async fn chain(store: &Store, chain: Uuid) -> Vec<AuditRecord> {
    store
        .list_audit(
            chain,
            &AuditFilter::default(),
            None,
            Order::OldestFirst,
            1000,
        )
        .await
        .unwrap()
}

/// The SQL literal of a UUID column value on `kind`.
fn uuid_sql(kind: BackendKind, id: Uuid) -> String {
    match kind {
        BackendKind::Sqlite => format!("X'{}'", id.simple()),
        BackendKind::Postgres => format!("'{id}'"),
    }
}

/// What someone with write access to the database runs before rewriting history.
fn disable_triggers(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Sqlite => {
            "DROP TRIGGER IF EXISTS audit_logs_no_update; DROP TRIGGER IF EXISTS audit_logs_no_delete;"
        }
        BackendKind::Postgres => "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only;",
    }
}

async fn verify_finds_altered_deleted_and_truncated_records(kind: BackendKind) {
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &db.config.url);

    // The operator's commands are recorded in the platform chain, as the system.
    let out = run(
        dir.path(),
        &[
            "admin",
            "create-user",
            "--email",
            "ops@example.com",
            "--platform-admin",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = run(
        dir.path(),
        &[
            "admin",
            "set-platform-admin",
            "--email",
            "ops@example.com",
            "--value",
            "false",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let store = db.store().await;
    let platform = chain(&store, PLATFORM_CHAIN).await;
    let actions: Vec<&str> = platform.iter().map(|r| r.record.action.as_str()).collect();
    assert_eq!(actions, ["user.create", "user.platform_admin"]);
    for r in &platform {
        assert_eq!(r.record.actor_type, ActorType::System);
        assert_eq!(
            r.record.actor_label.as_deref(),
            Some("aihub admin (command line)")
        );
        let text = format!("{:?}", r.record);
        assert!(!text.contains(PASSWORD), "no password in {text}");
        assert!(!text.contains("argon2"), "no password hash in {text}");
    }
    let grant = &platform[1].record;
    assert!(
        grant
            .before
            .as_deref()
            .unwrap()
            .contains(r#""is_platform_admin":true"#)
    );
    assert!(
        grant
            .after
            .as_deref()
            .unwrap()
            .contains(r#""is_platform_admin":false"#)
    );

    // Two organizations' chains of five records, and three more platform records.
    let (a, b) = (OrgId::new(), OrgId::new());
    for n in 0..5 {
        store
            .append_audit(&record(Some(a), "key.update", n))
            .await
            .unwrap();
        store
            .append_audit(&record(Some(b), "limit.update", n))
            .await
            .unwrap();
    }
    for n in 0..3 {
        store
            .append_audit(&record(None, "auth.login", n))
            .await
            .unwrap();
    }

    let (code, out) = verify(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked 3 chain(s), 15 record(s)"), "{out}");
    assert!(out.contains("audit log intact"), "{out}");
    let (code, out) = verify(dir.path(), &["--org", &a.to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked 1 chain(s), 5 record(s)"), "{out}");

    // An altered record: org A's third gets another actor.
    let a_chain = chain(&store, a.as_uuid()).await;
    let altered = &a_chain[2];
    store
        .tamper_with_audit_log(&format!(
            "{} UPDATE audit_logs SET actor_label = 'mallory@example.com' WHERE id = {}",
            disable_triggers(kind),
            uuid_sql(kind, altered.record.id)
        ))
        .await
        .unwrap();
    let (code, out) = verify(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "BROKEN chain=org {a} seq=3 record={}: contents do not match the record's hash",
            altered.record.id
        )),
        "{out}"
    );
    assert!(out.contains("audit log BROKEN: 1 of 3 chain(s)"), "{out}");

    // A deleted record in the middle of org B's chain: the gap is named with the record after it.
    let b_chain = chain(&store, b.as_uuid()).await;
    store
        .tamper_with_audit_log(&format!(
            "DELETE FROM audit_logs WHERE id = {}",
            uuid_sql(kind, b_chain[1].record.id)
        ))
        .await
        .unwrap();
    // A truncated tail: the platform chain's last record is gone, its head still counts it.
    let p_chain = chain(&store, PLATFORM_CHAIN).await;
    assert_eq!(p_chain.len(), 5);
    store
        .tamper_with_audit_log(&format!(
            "DELETE FROM audit_logs WHERE id = {}",
            uuid_sql(kind, p_chain[4].record.id)
        ))
        .await
        .unwrap();

    let (code, out) = verify(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "BROKEN chain=org {a} seq=3 record={}",
            altered.record.id
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "BROKEN chain=org {b} seq=2 record={}: record 2 is missing (next is 3)",
            b_chain[2].record.id
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "BROKEN chain=platform seq=5 record=-: the chain head says 5 records, 4 found in order"
        ),
        "{out}"
    );
    assert!(out.contains("audit log BROKEN: 3 of 3 chain(s)"), "{out}");

    // One organization at a time.
    let (code, out) = verify(dir.path(), &["--org", &b.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("chain=org {b} seq=2")), "{out}");
    assert!(!out.contains(&a.to_string()), "{out}");
    let stranger = OrgId::new();
    let (code, out) = verify(dir.path(), &["--org", &stranger.to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("no audit records for organization {stranger}")),
        "{out}"
    );
    store.close().await;
}
