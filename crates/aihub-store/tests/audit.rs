//! The audit log's storage on SQLite and PostgreSQL: chains link, filters and cursors select,
//! concurrent appends stay one chain, and the database refuses to rewrite records.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed step should fail the test loudly"
)]

use aihub_core::OrgId;
use aihub_core::time::from_millis;
use aihub_store::audit::{
    ActorType, AuditFilter, GENESIS, NewAuditRecord, Order, PLATFORM_CHAIN, record_hash,
};
use aihub_store::on_backend;
use aihub_store::testing::TestDb;
use uuid::Uuid;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = aihub_store::testing::TestDb::new(aihub_store::BackendKind::Sqlite).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(aihub_pg), ignore = "set AIHUB_TEST_DATABASE_URL to run PostgreSQL tests")]
                async fn $name() {
                    let db = aihub_store::testing::TestDb::new(aihub_store::BackendKind::Postgres).await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

conformance!(
    chains_link,
    refuses_updates_and_deletes,
    concurrent_appends_form_one_chain
);

fn record(org: Option<OrgId>, action: &str, at_ms: i64) -> NewAuditRecord {
    NewAuditRecord {
        id: Uuid::now_v7(),
        org_id: org,
        at: from_millis(at_ms),
        actor_type: ActorType::User,
        actor_id: Some(Uuid::now_v7()),
        actor_label: Some("a@example.com".into()),
        action: action.into(),
        target_type: "api_key".into(),
        target_id: Some("k1".into()),
        before: None,
        after: Some(r#"{"name":"x"}"#.into()),
        ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        request_id: Some(Uuid::now_v7()),
    }
}

async fn chains_link(db: &TestDb) {
    let store = &db.store().await;
    // Records of an org need the org only as an id: the log has no foreign keys.
    let org = OrgId::new();
    let a = store
        .append_audit(&record(Some(org), "key.create", 1000))
        .await
        .unwrap();
    let b = store
        .append_audit(&record(Some(org), "key.revoke", 2000))
        .await
        .unwrap();
    let p = store
        .append_audit(&record(None, "auth.login", 1500))
        .await
        .unwrap();
    assert_eq!((a.seq, b.seq, p.seq), (1, 2, 1));
    assert_eq!(a.chain_id, org.as_uuid());
    assert_eq!(p.chain_id, PLATFORM_CHAIN);
    assert_eq!(a.prev_hash, GENESIS.to_vec());
    assert_eq!(b.prev_hash, a.hash);
    assert_eq!(
        b.hash,
        record_hash(&a.hash, org.as_uuid(), 2, &b.record).to_vec()
    );

    let all = store
        .list_audit(
            org.as_uuid(),
            &AuditFilter::default(),
            None,
            Order::NewestFirst,
            10,
        )
        .await
        .unwrap();
    assert_eq!(all, vec![b.clone(), a.clone()]);
    let by_prefix = AuditFilter {
        action: Some("key.".into()),
        since: Some(from_millis(1500)),
        ..AuditFilter::default()
    };
    let found = store
        .list_audit(org.as_uuid(), &by_prefix, None, Order::OldestFirst, 10)
        .await
        .unwrap();
    assert_eq!(found, vec![b.clone()]);
    let exact = AuditFilter {
        action: Some("key.create".into()),
        actor_id: a.record.actor_id,
        until: Some(from_millis(1001)),
        target_type: Some("api_key".into()),
        target_id: Some("k1".into()),
        ..AuditFilter::default()
    };
    let found = store
        .list_audit(org.as_uuid(), &exact, Some(0), Order::OldestFirst, 10)
        .await
        .unwrap();
    assert_eq!(found, vec![a.clone()]);
    let after_cursor = store
        .list_audit(
            org.as_uuid(),
            &AuditFilter::default(),
            Some(2),
            Order::NewestFirst,
            10,
        )
        .await
        .unwrap();
    assert_eq!(after_cursor, vec![a]);

    // A noun filter treats `_` and `%` literally.
    let odd = store
        .append_audit(&record(Some(org), "keyx.create", 3000))
        .await
        .unwrap();
    for (filter, expected) in [("key_.", 0), ("keyx.", 1), ("%.", 0)] {
        let f = AuditFilter {
            action: Some(filter.into()),
            ..AuditFilter::default()
        };
        let found = store
            .list_audit(org.as_uuid(), &f, None, Order::OldestFirst, 10)
            .await
            .unwrap();
        assert_eq!(found.len(), expected, "{filter}");
    }
    let b = odd;

    let heads = store.audit_heads().await.unwrap();
    assert_eq!(heads.len(), 2);
    assert!(
        heads
            .iter()
            .any(|h| h.chain_id == org.as_uuid() && h.seq == 3 && h.hash == b.hash)
    );
    assert!(store.audit_chains_without_head().await.unwrap().is_empty());
}

async fn refuses_updates_and_deletes(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    store
        .append_audit(&record(Some(org), "key.create", 1000))
        .await
        .unwrap();
    let update = on_backend!(store.writer(), |p| {
        sqlx::query("UPDATE audit_logs SET action = 'x'")
            .execute(p)
            .await
            .map(|_| ())
    });
    assert!(update.is_err(), "update must be refused");
    let delete = on_backend!(store.writer(), |p| {
        sqlx::query("DELETE FROM audit_logs")
            .execute(p)
            .await
            .map(|_| ())
    });
    assert!(delete.is_err(), "delete must be refused");
}

async fn concurrent_appends_form_one_chain(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(&record(Some(org), "key.update", 1000 + i))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = store
        .list_audit(
            org.as_uuid(),
            &AuditFilter::default(),
            None,
            Order::OldestFirst,
            100,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    let mut prev = GENESIS.to_vec();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i64::try_from(i).unwrap() + 1);
        assert_eq!(r.prev_hash, prev);
        assert_eq!(
            r.hash,
            record_hash(&prev, r.chain_id, r.seq, &r.record).to_vec()
        );
        prev.clone_from(&r.hash);
    }
}
