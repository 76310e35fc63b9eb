//! Usage reports on SQLite and PostgreSQL: totals by user and team, per-day splits, the last
//! failed requests, names of what a report is split by, and the synthetic bulk load whose
//! rollups match its records.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed step should fail the test loudly"
)]

use aihub_core::time::now;
use aihub_core::{Currency, Email, KeyId, OrgId, TeamId, UserId};
use aihub_store::testing::{SyntheticUsage, TestDb};
use aihub_store::usage::day_of;
use aihub_store::{
    ApiKey, NewApiKey, NewUser, Org, Store, Team, UsageGroup, UsageGrouping, UsageRecord, User,
};
use chrono::{DateTime, Duration, Utc};
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
    totals_and_days_split_by_user_and_team,
    failed_requests_newest_first_per_org,
    group_names_are_those_of_the_org,
    a_synthetic_load_rolls_up_like_its_records,
    interleaved_rollups_in_one_batch_add_up,
);

async fn user(store: &Store, email: &str, name: &str) -> NewUser {
    let t = now();
    let u = NewUser {
        user: User {
            id: UserId::new(),
            email: Email::parse(email).unwrap(),
            name: name.into(),
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
    };
    store.create_user_with_personal_org(&u).await.unwrap();
    u
}

async fn key(store: &Store, org: OrgId, owner: UserId, name: &str, hash: u8) -> KeyId {
    let t = now();
    let id = KeyId::new();
    store
        .insert_key(&NewApiKey {
            key: ApiKey {
                id,
                org_id: org,
                team_id: None,
                owner_user_id: Some(owner),
                created_by: owner,
                name: name.into(),
                prefix: "sk-aihub-abcd".into(),
                models: None,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                created_at: t,
                updated_at: t,
            },
            key_hash: [hash; 32],
        })
        .await
        .unwrap();
    id
}

async fn team(store: &Store, org: OrgId, name: &str) -> TeamId {
    let t = now();
    let id = TeamId::new();
    store
        .insert_team(&Team {
            id,
            org_id: org,
            name: name.into(),
            member_count: 0,
            created_at: t,
            updated_at: t,
        })
        .await
        .unwrap();
    id
}

fn record(
    org: OrgId,
    user: Option<UserId>,
    team: Option<TeamId>,
    key: Option<KeyId>,
    at: DateTime<Utc>,
    status: i32,
) -> UsageRecord {
    UsageRecord {
        request_id: Uuid::now_v7(),
        org_id: org,
        user_id: user,
        key_id: key,
        team_id: team,
        endpoint: "chat.completions".into(),
        model: "gpt-4o".into(),
        provider: Some("mock".into()),
        upstream_model: None,
        prompt_tokens: 10,
        completion_tokens: 20,
        cached_tokens: 0,
        cost_micros: 100,
        currency: Currency::USD,
        status,
        error_code: None,
        latency_ms: 5,
        ttft_ms: None,
        streamed: false,
        estimated: false,
        created_at: at,
    }
}

fn day1() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .to_utc()
}

async fn totals_and_days_split_by_user_and_team(db: &TestDb) {
    let store = db.store().await;
    let a = user(&store, "a@example.com", "A").await;
    let org = a.personal_org.id;
    let (u, t) = (a.user.id, team(&store, org, "blue").await);
    let d1 = day1();
    let d2 = d1 + Duration::days(1);
    store
        .insert_usage(&[
            record(org, Some(u), Some(t), None, d1, 200),
            record(org, Some(u), Some(t), None, d2, 200),
            record(org, Some(u), None, None, d2, 200),
            record(org, None, None, None, d2, 429),
            record(OrgId::new(), Some(u), Some(t), None, d2, 200),
        ])
        .await
        .unwrap();
    let (from, to) = (day_of(d1), day_of(d2));
    let by_user = store
        .usage_totals(org, from, to, UsageGrouping::User)
        .await
        .unwrap();
    let pairs: Vec<(UsageGroup, i64, i64)> = by_user
        .iter()
        .map(|r| (r.group.clone(), r.requests, r.errors))
        .collect();
    assert_eq!(pairs.len(), 2);
    assert!(pairs.contains(&(UsageGroup::User(Some(u)), 3, 0)));
    assert!(pairs.contains(&(UsageGroup::User(None), 1, 1)));
    let by_team = store
        .usage_totals(org, from, to, UsageGrouping::Team)
        .await
        .unwrap();
    assert!(
        by_team
            .iter()
            .any(|r| r.group == UsageGroup::Team(Some(t)) && r.requests == 2)
    );
    assert!(
        by_team
            .iter()
            .any(|r| r.group == UsageGroup::Team(None) && r.requests == 2)
    );
    assert_eq!(
        by_team[0].group.id().is_some(),
        by_team[0].group == UsageGroup::Team(Some(t))
    );

    // Per day: ordered by day, each day split by team.
    let days = store
        .usage_daily(org, from, to, UsageGrouping::Team)
        .await
        .unwrap();
    let flat: Vec<(String, UsageGroup, i64)> = days
        .iter()
        .map(|d| (d.day.to_string(), d.totals.group.clone(), d.totals.requests))
        .collect();
    assert_eq!(flat.len(), 3, "{flat:?}");
    assert_eq!(flat[0], ("2026-11-01".into(), UsageGroup::Team(Some(t)), 1));
    assert!(flat[1..].contains(&("2026-11-02".into(), UsageGroup::Team(None), 2)));
    assert!(flat[1..].contains(&("2026-11-02".into(), UsageGroup::Team(Some(t)), 1)));
    let by_day = store
        .usage_daily(org, from, to, UsageGrouping::Day)
        .await
        .unwrap();
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[1].totals.requests, 3);
    assert_eq!(by_day[1].totals.group, UsageGroup::Day(d2.date_naive()));
    let by_model = store
        .usage_daily(org, from + 1, to, UsageGrouping::Model)
        .await
        .unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!(by_model[0].totals.prompt_tokens, 30);
    assert_eq!(by_model[0].totals.cost_micros, 300);
}

async fn failed_requests_newest_first_per_org(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    let t0 = day1();
    let mut records: Vec<UsageRecord> = (0..20)
        .map(|i| {
            record(
                org,
                None,
                None,
                None,
                t0 + Duration::seconds(i),
                if i % 4 == 0 { 502 } else { 200 },
            )
        })
        .collect();
    // A 200 with an error code (a stream the client left) is a failure too.
    records[5].error_code = Some("client_closed".into());
    store.insert_usage(&records).await.unwrap();
    store
        .insert_usage(&[record(OrgId::new(), None, None, None, t0, 500)])
        .await
        .unwrap();
    let errors = store.usage_errors(org, 10).await.unwrap();
    let ids: Vec<Uuid> = errors.iter().map(|r| r.request_id).collect();
    let expected: Vec<Uuid> = [16, 12, 8, 5, 4, 0]
        .iter()
        .map(|&i| records[i].request_id)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(store.usage_errors(org, 2).await.unwrap().len(), 2);
    assert!(
        store
            .usage_errors(OrgId::new(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn group_names_are_those_of_the_org(db: &TestDb) {
    let store = db.store().await;
    let a = user(&store, "a@example.com", "").await;
    let b = user(&store, "b@example.com", "Bea").await;
    let org = a.personal_org.id;
    let mine = key(&store, org, a.user.id, "ci", 1).await;
    let theirs = key(&store, b.personal_org.id, b.user.id, "other", 2).await;
    let t = team(&store, org, "blue").await;
    let other_team = team(&store, b.personal_org.id, "red").await;
    store
        .insert_usage(&[record(org, Some(a.user.id), None, None, day1(), 200)])
        .await
        .unwrap();
    let names = |g, ids: Vec<Uuid>| {
        let store = store.clone();
        async move {
            let mut v = store.usage_group_names(org, g, &ids).await.unwrap();
            v.sort();
            v
        }
    };
    assert_eq!(
        names(UsageGrouping::Key, vec![mine.as_uuid(), theirs.as_uuid()]).await,
        [(mine.as_uuid(), "ci".to_owned())]
    );
    assert_eq!(
        names(
            UsageGrouping::Team,
            vec![t.as_uuid(), other_team.as_uuid(), Uuid::now_v7()]
        )
        .await,
        [(t.as_uuid(), "blue".to_owned())]
    );
    // A user without a name is shown by e-mail; one neither in the org nor with usage there is
    // not named.
    assert_eq!(
        names(
            UsageGrouping::User,
            vec![a.user.id.as_uuid(), b.user.id.as_uuid()]
        )
        .await,
        [(a.user.id.as_uuid(), "a@example.com".to_owned())]
    );
    // A member without usage is named too.
    store
        .add_member(org, b.user.id, aihub_core::Role::Viewer, now())
        .await
        .unwrap();
    assert_eq!(
        names(UsageGrouping::User, vec![b.user.id.as_uuid()]).await,
        [(b.user.id.as_uuid(), "Bea".to_owned())]
    );
    assert!(
        names(UsageGrouping::Model, vec![mine.as_uuid()])
            .await
            .is_empty()
    );
    assert!(names(UsageGrouping::Key, Vec::new()).await.is_empty());
    // More ids than one statement takes.
    let many: Vec<Uuid> = (0..1_200)
        .map(|_| Uuid::now_v7())
        .chain([mine.as_uuid()])
        .collect();
    assert_eq!(names(UsageGrouping::Key, many).await.len(), 1);
}

async fn a_synthetic_load_rolls_up_like_its_records(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    let (k1, k2, u, t) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let first_day = day_of(day1());
    let load = SyntheticUsage {
        org,
        rows: 5_000,
        first_day,
        days: 10,
        callers: vec![
            (Some(u), Some(t), Some(k1)),
            (Some(u), None, Some(k2)),
            (None, None, None),
        ],
        models: vec!["a".into(), "b".into()],
    };
    store.insert_synthetic_usage(&load).await.unwrap();
    assert_eq!(store.usage_count().await.unwrap(), 5_000);
    let totals = store
        .usage_totals(org, first_day, first_day + 9, UsageGrouping::Key)
        .await
        .unwrap();
    let requests: i64 = totals.iter().map(|r| r.requests).sum();
    assert_eq!(requests, 5_000);
    assert_eq!(totals.len(), 3);
    let errors: i64 = totals.iter().map(|r| r.errors).sum();
    assert_eq!(errors, (5_000 + 96) / 97);
    assert_eq!(store.usage_errors(org, 100).await.unwrap().len(), 52);
    let days = store
        .usage_daily(org, first_day, first_day + 20, UsageGrouping::Day)
        .await
        .unwrap();
    assert_eq!(days.len(), 10, "spread over ten days");
    assert!(days.iter().all(|d| d.totals.requests == 500));
    // The rollups agree with the records: the newest page of records, read raw.
    let newest = store.usage_records(org, None, None, None, 3).await.unwrap();
    assert!(newest[0].created_at > newest[2].created_at);
    assert!(newest[0].created_at.date_naive() == days[9].day);
}

/// One batch whose records belong to three keys, in runs of varying length and interleaved
/// (A A B A C C C B …): every key's rollup is the sum of its own records, however the runs fall.
async fn interleaved_rollups_in_one_batch_add_up(db: &TestDb) {
    let store = db.store().await;
    let a = user(&store, "runs@example.com", "Runs").await;
    let org = a.personal_org.id;
    let mut keys = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        keys.push(key(&store, org, a.user.id, name, 40 + u8::try_from(i).unwrap()).await);
    }
    let pattern = [0, 0, 1, 0, 2, 2, 2, 1, 1, 0, 2, 0, 0, 0, 1, 2, 1, 0];
    let mut expected = std::collections::HashMap::new();
    let mut records = Vec::new();
    for round in 0..7 {
        for (i, &k) in pattern.iter().enumerate() {
            let n = i64::try_from(round * pattern.len() + i).unwrap();
            let mut r = record(org, Some(a.user.id), None, Some(keys[k]), day1(), 200);
            if n % 5 == 0 {
                r.status = 502;
            }
            (r.prompt_tokens, r.completion_tokens, r.cost_micros) = (n, 2 * n, 3 * n + 1);
            let e = expected.entry(keys[k].as_uuid()).or_insert((0, 0, 0, 0, 0));
            *e = (
                e.0 + 1,
                e.1 + i64::from(n % 5 == 0),
                e.2 + n,
                e.3 + 2 * n,
                e.4 + 3 * n + 1,
            );
            records.push(r);
        }
    }
    assert_eq!(store.insert_usage(&records).await.unwrap(), 126);
    let d = day_of(day1());
    let totals = store
        .usage_totals(org, d, d, UsageGrouping::Key)
        .await
        .unwrap();
    assert_eq!(totals.len(), 3);
    for t in totals {
        assert!(matches!(t.group, UsageGroup::Key(Some(_))), "{:?}", t.group);
        let k = t.group.id().unwrap();
        assert_eq!(
            (
                t.requests,
                t.errors,
                t.prompt_tokens,
                t.completion_tokens,
                t.cost_micros
            ),
            expected[&k],
            "key {k}"
        );
    }
}
