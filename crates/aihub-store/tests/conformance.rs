//! The store conformance suite: every test runs on SQLite and on PostgreSQL. PostgreSQL tests
//! are compiled as ignored (reported as skipped) unless `AIHUB_TEST_DATABASE_URL` is set.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed step should fail the test loudly"
)]

use aihub_core::Currency;
use aihub_core::config::ProviderKind;
use aihub_core::time::now;
use aihub_core::{Email, KeyId, OrgId, SessionId, UserId};
use aihub_store::testing::TestDb;
use aihub_store::{
    ApiKey, BackendKind, KeyChanges, ModelRecord, NewApiKey, NewUser, Org, PriceRecord,
    ProviderRecord, Session, Store, StoreError, UsageGroup, UsageGrouping, UsageRecord, User,
};
use chrono::Duration;
use uuid::Uuid;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = aihub_store::testing::TestDb::new(aihub_store::BackendKind::Sqlite).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
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
    migrations_are_idempotent,
    user_with_personal_org,
    duplicate_email_is_a_conflict,
    users_paginate_newest_first,
    password_and_disable,
    keys_are_org_scoped,
    key_updates_are_partial,
    revoke_is_idempotent_and_final,
    rotate_replaces_the_hash,
    key_auth_reports_owner_state,
    last_used_never_moves_backwards,
    sessions_lifecycle,
    usage_inserts_are_idempotent_and_roll_up,
    usage_records_paginate_and_filter,
    catalog_providers_and_models,
    prices_are_append_only,
);

fn new_user(email: &str) -> NewUser {
    let t = now();
    NewUser {
        user: User {
            id: UserId::new(),
            email: Email::parse(email).unwrap(),
            name: "Test".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            is_platform_admin: false,
            disabled_at: None,
            created_at: t,
            updated_at: t,
        },
        personal_org: Org {
            id: OrgId::new(),
            name: "Personal".into(),
            is_personal: true,
            created_at: t,
            updated_at: t,
        },
    }
}

async fn seeded(db: &TestDb, email: &str) -> (Store, NewUser) {
    let store = db.store().await;
    let u = new_user(email);
    store.create_user_with_personal_org(&u).await.unwrap();
    (store, u)
}

fn new_key(org: OrgId, owner: UserId, hash_byte: u8) -> NewApiKey {
    let t = now();
    NewApiKey {
        key: ApiKey {
            id: KeyId::new(),
            org_id: org,
            team_id: None,
            owner_user_id: Some(owner),
            created_by: owner,
            name: "ci".into(),
            prefix: "sk-aihub-abcd".into(),
            models: Some(vec!["gpt-4o-mini".into()]),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            created_at: t,
            updated_at: t,
        },
        key_hash: [hash_byte; 32],
    }
}

async fn migrations_are_idempotent(db: &TestDb) {
    let store = db.store().await;
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.kind(), db.kind());
    let again = Store::connect(&db.config).await.unwrap();
    again.migrate().await.unwrap();
    again.close().await;
    store.close().await;
}

async fn user_with_personal_org(db: &TestDb) {
    let (store, u) = seeded(db, "Alice@Example.com").await;
    let by_id = store.user_by_id(u.user.id).await.unwrap().unwrap();
    assert_eq!(by_id, u.user);
    let by_email = store
        .user_by_email(&Email::parse("alice@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.id, u.user.id);
    assert!(
        !format!("{by_email:?}").contains("argon2"),
        "Debug must redact the hash"
    );
    let ms = store.memberships_of(u.user.id).await.unwrap();
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].org, u.personal_org);
    assert_eq!(ms[0].role, aihub_core::Role::Owner);
    assert_eq!(
        store.personal_org_of(u.user.id).await.unwrap(),
        Some(u.personal_org.id)
    );
    let m = store
        .membership(u.personal_org.id, u.user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.role, aihub_core::Role::Owner);
    assert!(
        store
            .membership(OrgId::new(), u.user.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.user_by_id(UserId::new()).await.unwrap().is_none());
}

async fn duplicate_email_is_a_conflict(db: &TestDb) {
    let (store, _) = seeded(db, "bob@example.com").await;
    let again = new_user("bob@example.com");
    let err = store
        .create_user_with_personal_org(&again)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    // The failed registration left no orphan organization behind.
    assert!(
        store
            .memberships_of(again.user.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .personal_org_of(again.user.id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn users_paginate_newest_first(db: &TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let u = new_user(&format!("u{i}@example.com"));
        ids.push(u.user.id);
        store.create_user_with_personal_org(&u).await.unwrap();
    }
    let page1 = store.list_users(None, 2).await.unwrap();
    assert_eq!(
        page1.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let page2 = store.list_users(Some(page1[1].id), 2).await.unwrap();
    assert_eq!(
        page2.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let page3 = store.list_users(Some(page2[1].id), 2).await.unwrap();
    assert_eq!(page3.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ids[0]]);
}

async fn password_and_disable(db: &TestDb) {
    let (store, u) = seeded(db, "carol@example.com").await;
    let t = now();
    assert!(
        store
            .set_password_hash(u.user.id, "new-hash", t)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .user_by_id(u.user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new-hash"
    );
    assert!(
        !store
            .set_password_hash(UserId::new(), "x", t)
            .await
            .unwrap()
    );

    let s = session_for(u.user.id);
    store.insert_session(&s, &[7; 32]).await.unwrap();
    assert!(
        store
            .set_user_disabled(u.user.id, Some(t), t)
            .await
            .unwrap()
    );
    let disabled = store.user_by_id(u.user.id).await.unwrap().unwrap();
    assert_eq!(disabled.disabled_at, Some(t));
    assert!(
        store
            .session_by_token_hash(&[7; 32])
            .await
            .unwrap()
            .is_none(),
        "disabling ends every session"
    );
    assert!(store.set_user_disabled(u.user.id, None, t).await.unwrap());
    assert!(
        store
            .user_by_id(u.user.id)
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none()
    );
    assert!(
        !store
            .set_user_disabled(UserId::new(), Some(t), t)
            .await
            .unwrap()
    );

    assert!(store.set_platform_admin(u.user.id, true, t).await.unwrap());
    assert!(
        store
            .user_by_id(u.user.id)
            .await
            .unwrap()
            .unwrap()
            .is_platform_admin
    );
}

async fn keys_are_org_scoped(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let b = new_user("b@example.com");
    store.create_user_with_personal_org(&b).await.unwrap();
    let ka = new_key(a.personal_org.id, a.user.id, 1);
    let kb = new_key(b.personal_org.id, b.user.id, 2);
    store.insert_key(&ka).await.unwrap();
    store.insert_key(&kb).await.unwrap();

    let list = store.list_keys(a.personal_org.id, None, 50).await.unwrap();
    assert_eq!(list, vec![ka.key.clone()]);
    assert_eq!(
        store.key(a.personal_org.id, ka.key.id).await.unwrap(),
        Some(ka.key.clone())
    );
    // B's key through A's org: not found, and no write touches it.
    assert!(
        store
            .key(a.personal_org.id, kb.key.id)
            .await
            .unwrap()
            .is_none()
    );
    let t = now();
    let change = KeyChanges {
        name: Some("stolen".into()),
        ..KeyChanges::default()
    };
    assert!(
        store
            .update_key(a.personal_org.id, kb.key.id, &change, t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .revoke_key(a.personal_org.id, kb.key.id, t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .rotate_key(a.personal_org.id, kb.key.id, "p", &[9; 32], t)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.key(b.personal_org.id, kb.key.id).await.unwrap(),
        Some(kb.key.clone())
    );

    // Duplicate hashes are refused.
    let mut dup = new_key(a.personal_org.id, a.user.id, 1);
    dup.key.name = "dup".into();
    assert!(matches!(
        store.insert_key(&dup).await,
        Err(StoreError::Conflict)
    ));

    // Pagination by cursor.
    for i in 10..14 {
        store
            .insert_key(&new_key(a.personal_org.id, a.user.id, i))
            .await
            .unwrap();
    }
    let p1 = store.list_keys(a.personal_org.id, None, 3).await.unwrap();
    assert_eq!(p1.len(), 3);
    let p2 = store
        .list_keys(a.personal_org.id, Some(p1[2].id), 3)
        .await
        .unwrap();
    assert_eq!(p2.len(), 2);
    assert!(p1.iter().chain(&p2).all(|k| k.org_id == a.personal_org.id));
}

async fn key_updates_are_partial(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let k = new_key(a.personal_org.id, a.user.id, 1);
    store.insert_key(&k).await.unwrap();
    let org = a.personal_org.id;
    let t = now();
    let expiry = t + Duration::days(30);

    let renamed = store
        .update_key(
            org,
            k.key.id,
            &KeyChanges {
                name: Some("renamed".into()),
                ..Default::default()
            },
            t,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.models, k.key.models, "untouched fields stay");

    let set = store
        .update_key(
            org,
            k.key.id,
            &KeyChanges {
                expires_at: Some(Some(expiry)),
                models: Some(None),
                ..Default::default()
            },
            t,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.expires_at, Some(expiry));
    assert_eq!(set.models, None);
    assert_eq!(set.name, "renamed");

    let cleared = store
        .update_key(
            org,
            k.key.id,
            &KeyChanges {
                expires_at: Some(None),
                models: Some(Some(vec!["a".into(), "b".into()])),
                ..Default::default()
            },
            t,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.expires_at, None);
    assert_eq!(cleared.models, Some(vec!["a".to_owned(), "b".to_owned()]));
}

async fn revoke_is_idempotent_and_final(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let k = new_key(a.personal_org.id, a.user.id, 1);
    store.insert_key(&k).await.unwrap();
    let org = a.personal_org.id;
    let t1 = now();
    let (revoked, hash) = store.revoke_key(org, k.key.id, t1).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t1));
    assert_eq!(hash, vec![1; 32]);
    let t2 = t1 + Duration::seconds(5);
    let (again, _) = store.revoke_key(org, k.key.id, t2).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(t1), "first revocation time is kept");
    assert!(
        store
            .update_key(
                org,
                k.key.id,
                &KeyChanges {
                    name: Some("x".into()),
                    ..Default::default()
                },
                t2
            )
            .await
            .unwrap()
            .is_none(),
        "a revoked key cannot be edited"
    );
    assert!(
        store
            .rotate_key(org, k.key.id, "p", &[3; 32], t2)
            .await
            .unwrap()
            .is_none()
    );
    let auth = store.key_auth_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert!(auth.key.revoked_at.is_some());
}

async fn rotate_replaces_the_hash(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let k = new_key(a.personal_org.id, a.user.id, 1);
    store.insert_key(&k).await.unwrap();
    let (rotated, old) = store
        .rotate_key(
            a.personal_org.id,
            k.key.id,
            "sk-aihub-new1",
            &[5; 32],
            now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old, vec![1; 32]);
    assert_eq!(rotated.prefix, "sk-aihub-new1");
    assert_eq!(rotated.id, k.key.id);
    assert!(store.key_auth_by_hash(&[1; 32]).await.unwrap().is_none());
    assert_eq!(
        store
            .key_auth_by_hash(&[5; 32])
            .await
            .unwrap()
            .unwrap()
            .key
            .id,
        k.key.id
    );
}

async fn key_auth_reports_owner_state(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let k = new_key(a.personal_org.id, a.user.id, 1);
    store.insert_key(&k).await.unwrap();
    let auth = store.key_auth_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(auth.key, k.key);
    assert_eq!(auth.key_hash, vec![1; 32]);
    assert!(!auth.owner_disabled);
    assert!(auth.owner_is_member);
    let t = now();
    store
        .set_user_disabled(a.user.id, Some(t), t)
        .await
        .unwrap();
    assert!(
        store
            .key_auth_by_hash(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .owner_disabled
    );
    assert!(store.key_auth_by_hash(&[2; 32]).await.unwrap().is_none());
}

async fn last_used_never_moves_backwards(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let k = new_key(a.personal_org.id, a.user.id, 1);
    store.insert_key(&k).await.unwrap();
    let t = now();
    store.record_keys_used(&[]).await.unwrap();
    store.record_keys_used(&[(k.key.id, t)]).await.unwrap();
    store
        .record_keys_used(&[(k.key.id, t - Duration::seconds(60)), (KeyId::new(), t)])
        .await
        .unwrap();
    let got = store
        .key(a.personal_org.id, k.key.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_used_at, Some(t));
}

fn session_for(user: UserId) -> Session {
    let t = now();
    Session {
        id: SessionId::new(),
        user_id: user,
        created_at: t,
        expires_at: t + Duration::hours(1),
        last_seen_at: t,
        ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
    }
}

async fn sessions_lifecycle(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let s1 = session_for(a.user.id);
    let s2 = session_for(a.user.id);
    let s3 = session_for(a.user.id);
    store.insert_session(&s1, &[1; 32]).await.unwrap();
    store.insert_session(&s2, &[2; 32]).await.unwrap();
    store.insert_session(&s3, &[3; 32]).await.unwrap();
    assert!(matches!(
        store
            .insert_session(&session_for(a.user.id), &[1; 32])
            .await,
        Err(StoreError::Conflict)
    ));

    let found = store
        .session_by_token_hash(&[1; 32])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.session, s1);
    assert_eq!(found.user.id, a.user.id);

    let later = s1.last_seen_at + Duration::minutes(5);
    store.touch_session(s1.id, later).await.unwrap();
    assert_eq!(
        store
            .session_by_token_hash(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .session
            .last_seen_at,
        later
    );

    assert_eq!(
        store
            .delete_user_sessions(a.user.id, Some(s1.id))
            .await
            .unwrap(),
        2
    );
    assert!(
        store
            .session_by_token_hash(&[2; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session_by_token_hash(&[1; 32])
            .await
            .unwrap()
            .is_some()
    );

    assert!(store.delete_session(s1.id).await.unwrap());
    assert!(!store.delete_session(s1.id).await.unwrap());

    // Stale sweep: one expired, one idle, one fresh.
    let t = now();
    let mut expired = session_for(a.user.id);
    expired.expires_at = t - Duration::seconds(1);
    let mut idle = session_for(a.user.id);
    idle.last_seen_at = t - Duration::hours(3);
    let fresh = session_for(a.user.id);
    store.insert_session(&expired, &[4; 32]).await.unwrap();
    store.insert_session(&idle, &[5; 32]).await.unwrap();
    store.insert_session(&fresh, &[6; 32]).await.unwrap();
    assert_eq!(
        store
            .delete_stale_sessions(t, t - Duration::hours(2))
            .await
            .unwrap(),
        2
    );
    assert!(
        store
            .session_by_token_hash(&[6; 32])
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.delete_user_sessions(a.user.id, None).await.unwrap(),
        1
    );
}

fn usage(
    org: OrgId,
    key: Option<KeyId>,
    model: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> UsageRecord {
    UsageRecord {
        request_id: Uuid::now_v7(),
        org_id: org,
        user_id: None,
        key_id: key,
        team_id: None,
        endpoint: "chat.completions".into(),
        model: model.into(),
        provider: Some("mock".into()),
        upstream_model: Some(model.into()),
        prompt_tokens: 10,
        completion_tokens: 20,
        cached_tokens: 2,
        cost_micros: 1_234,
        currency: Currency::USD,
        status: 200,
        error_code: None,
        latency_ms: 12,
        ttft_ms: Some(3),
        streamed: true,
        estimated: false,
        created_at: at,
    }
}

async fn usage_inserts_are_idempotent_and_roll_up(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let org = a.personal_org.id;
    let key = KeyId::new();
    let day1 = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .to_utc();
    let day2 = day1 + Duration::days(1);
    let mut records = vec![
        usage(org, Some(key), "gpt-4o", day1),
        usage(org, Some(key), "gpt-4o", day1),
        usage(org, None, "claude", day2),
    ];
    records[1].status = 502;
    records[1].error_code = Some("upstream_error".into());
    assert_eq!(store.insert_usage(&records).await.unwrap(), 3);
    // Replaying the same batch (a journal replay after a crash) inserts nothing and leaves the
    // rollups unchanged; a batch mixing old and new adds only the new one.
    assert_eq!(store.insert_usage(&records).await.unwrap(), 0);
    let extra = usage(org, Some(key), "gpt-4o", day2);
    assert_eq!(
        store
            .insert_usage(&[records[0].clone(), extra.clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.usage_count().await.unwrap(), 4);
    assert_eq!(
        store
            .usage_record(records[2].request_id)
            .await
            .unwrap()
            .unwrap(),
        records[2]
    );

    let d1 = aihub_store::usage::day_of(day1);
    let by_day = store
        .usage_totals(org, d1, d1 + 1, UsageGrouping::Day)
        .await
        .unwrap();
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[0].group, UsageGroup::Day(day1.date_naive()));
    assert_eq!((by_day[0].requests, by_day[0].errors), (2, 1));
    assert_eq!(by_day[0].prompt_tokens, 20);
    assert_eq!(by_day[0].completion_tokens, 40);
    assert_eq!(by_day[0].cached_tokens, 4);
    assert_eq!(by_day[0].cost_micros, 2_468);
    assert_eq!(by_day[1].requests, 2);
    let by_model = store
        .usage_totals(org, d1, d1 + 1, UsageGrouping::Model)
        .await
        .unwrap();
    let models: Vec<_> = by_model
        .iter()
        .map(|t| (t.group.clone(), t.requests))
        .collect();
    assert_eq!(
        models,
        vec![
            (UsageGroup::Model("claude".into()), 1),
            (UsageGroup::Model("gpt-4o".into()), 3)
        ]
    );
    let by_key = store
        .usage_totals(org, d1, d1 + 1, UsageGrouping::Key)
        .await
        .unwrap();
    assert_eq!(by_key.len(), 2);
    assert!(
        by_key
            .iter()
            .any(|t| t.group == UsageGroup::Key(None) && t.requests == 1)
    );
    assert!(
        by_key
            .iter()
            .any(|t| t.group == UsageGroup::Key(Some(key)) && t.requests == 3)
    );
    assert_eq!(by_key[0].currency, "USD");
    // Other orgs and other days see nothing.
    assert!(
        store
            .usage_totals(OrgId::new(), d1, d1 + 1, UsageGrouping::Day)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .usage_totals(org, d1 + 2, d1 + 9, UsageGrouping::Day)
            .await
            .unwrap()
            .is_empty()
    );

    // Large batches go in several statements, the last padded with copies that count once.
    let many: Vec<_> = (0..1_200).map(|_| usage(org, None, "bulk", day1)).collect();
    assert_eq!(store.insert_usage(&many).await.unwrap(), 1_200);
    assert_eq!(store.insert_usage(&[]).await.unwrap(), 0);

    // An id twice in one batch counts once; a large batch with an old record in its second
    // statement (after a first one that went in) adds exactly its new records.
    let twin = usage(org, None, "twin", day1);
    assert_eq!(store.insert_usage(&[twin.clone(), twin]).await.unwrap(), 1);
    let mut mixed: Vec<_> = (0..1_100)
        .map(|_| usage(org, None, "mixed", day1))
        .collect();
    mixed.insert(1_050, records[2].clone());
    assert_eq!(store.insert_usage(&mixed).await.unwrap(), 1_100);
    assert_eq!(store.usage_count().await.unwrap(), 4 + 1_200 + 1 + 1_100);
    let by_model = store
        .usage_totals(org, d1, d1 + 2, UsageGrouping::Model)
        .await
        .unwrap();
    let requests = |m: &str| {
        by_model
            .iter()
            .find(|t| t.group == UsageGroup::Model(m.into()))
            .map(|t| t.requests)
    };
    assert_eq!(requests("twin"), Some(1));
    assert_eq!(requests("mixed"), Some(1_100));
    assert_eq!(requests("bulk"), Some(1_200));
    assert_eq!(
        requests("claude"),
        Some(1),
        "the old record is not counted again"
    );
}

async fn usage_records_paginate_and_filter(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let org = a.personal_org.id;
    let t0 = now();
    let records: Vec<_> = (0..5)
        .map(|i| usage(org, None, "m", t0 + Duration::seconds(i)))
        .collect();
    store.insert_usage(&records).await.unwrap();
    store
        .insert_usage(&[usage(OrgId::new(), None, "m", t0)])
        .await
        .unwrap();
    let p1 = store.usage_records(org, None, None, None, 2).await.unwrap();
    assert_eq!(
        p1.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        vec![records[4].request_id, records[3].request_id]
    );
    let p2 = store
        .usage_records(org, Some(p1[1].request_id), None, None, 10)
        .await
        .unwrap();
    assert_eq!(p2.len(), 3);
    let window = store
        .usage_records(
            org,
            None,
            Some(t0 + Duration::seconds(1)),
            Some(t0 + Duration::seconds(3)),
            10,
        )
        .await
        .unwrap();
    assert_eq!(window.len(), 2);
}

async fn catalog_providers_and_models(db: &TestDb) {
    let store = db.store().await;
    let t = now();
    let mut p = ProviderRecord {
        id: Uuid::now_v7(),
        name: "deepseek".into(),
        kind: ProviderKind::Openai,
        base_url: Some("https://api.deepseek.com/v1".into()),
        api_key_env: Some("DEEPSEEK_API_KEY".into()),
        api_key_file: None,
        api_version: None,
        connect_timeout_ms: 1_000,
        first_byte_timeout_ms: 2_000,
        total_timeout_ms: 3_000,
        mock_latency_ms: 0,
        mock_chunk_interval_ms: 0,
        created_at: t,
        updated_at: t,
    };
    store.upsert_provider(&p).await.unwrap();
    p.base_url = Some("https://proxy.example/v1".into());
    store.upsert_provider(&p).await.unwrap();
    assert_eq!(store.providers().await.unwrap(), vec![p.clone()]);
    let dup = ProviderRecord {
        id: Uuid::now_v7(),
        ..p.clone()
    };
    assert!(matches!(
        store.upsert_provider(&dup).await,
        Err(StoreError::Conflict)
    ));

    let m = ModelRecord {
        id: Uuid::now_v7(),
        name: "deepseek-chat".into(),
        provider: "deepseek".into(),
        upstream_model: None,
        created_at: t,
        updated_at: t,
    };
    store.upsert_model(&m).await.unwrap();
    assert_eq!(store.models().await.unwrap(), vec![m.clone()]);
    assert!(matches!(
        store
            .upsert_model(&ModelRecord {
                id: Uuid::now_v7(),
                ..m.clone()
            })
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(store.delete_model("deepseek-chat").await.unwrap());
    assert!(!store.delete_model("deepseek-chat").await.unwrap());
    assert!(store.delete_provider("deepseek").await.unwrap());
    assert!(store.providers().await.unwrap().is_empty());
}

async fn prices_are_append_only(db: &TestDb) {
    let store = db.store().await;
    let t = now();
    let price = |from: chrono::DateTime<chrono::Utc>, input: i64| PriceRecord {
        id: Uuid::now_v7(),
        model: "gpt-4o".into(),
        currency: Currency::USD,
        input_micros: input,
        cached_input_micros: Some(1_250_000),
        output_micros: 10_000_000,
        effective_from: from,
        source: "default".into(),
        created_by: None,
        created_at: t,
    };
    let old = price(t - Duration::days(30), 5_000_000);
    let new = price(t, 2_500_000);
    assert_eq!(
        store
            .seed_prices(&[old.clone(), new.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.seed_prices(&[price(t, 1)]).await.unwrap(),
        0,
        "existing rows are kept"
    );
    assert!(matches!(
        store.insert_price(&price(t, 1)).await,
        Err(StoreError::Conflict)
    ));
    store
        .insert_price(&price(t + Duration::days(1), 2_000_000))
        .await
        .unwrap();
    let all = store.prices().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], old);
    assert_eq!(all[1], new);
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://x", "sqlite::memory:", "sqlite://", "http://x"] {
        let config = aihub_core::config::DatabaseConfig {
            url: url.into(),
            ..Default::default()
        };
        let err = Store::connect(&config).await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl), "{url}: {err:?}");
    }
    let _ = BackendKind::Sqlite;
}
