//! Store conformance for plans, rate limits, budgets and the spend sums behind them: every test
//! runs on SQLite and on PostgreSQL (the latter ignored unless `AIHUB_TEST_DATABASE_URL` is set).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed step should fail the test loudly"
)]

use aihub_core::governance::{BudgetPolicy, BudgetRule, LimitRule, Period, Plan, ScopeType};
use aihub_core::secret::Secret;
use aihub_core::time::{from_millis, now};
use aihub_core::{Currency, Email, KeyId, OrgId, Role, TeamId, UserId};
use aihub_store::testing::TestDb;
use aihub_store::{NewUser, Org, Store, StoreError, UsageRecord, User};
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
    plans_are_seeded_and_editable,
    orgs_default_to_the_free_plan,
    limits_are_org_scoped_and_unique_per_model,
    budgets_round_trip_with_secrets,
    spend_and_tokens_are_summed_by_scope,
    members_can_be_added,
);

/// Milliseconds, as stored.
fn t0() -> DateTime<Utc> {
    from_millis(now().timestamp_millis())
}

async fn seeded(db: &TestDb, email: &str) -> (Store, NewUser) {
    let store = db.store().await;
    let t = t0();
    let u = NewUser {
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
    };
    store.create_user_with_personal_org(&u).await.unwrap();
    (store, u)
}

/// Another user with a personal org of their own.
async fn second_user(store: &Store, a: &NewUser, email: &str) -> NewUser {
    let b = NewUser {
        user: User {
            id: UserId::new(),
            email: Email::parse(email).unwrap(),
            ..a.user.clone()
        },
        personal_org: Org {
            id: OrgId::new(),
            ..a.personal_org.clone()
        },
    };
    store.create_user_with_personal_org(&b).await.unwrap();
    b
}

fn limit(org: OrgId, scope: ScopeType, scope_id: Uuid, model: Option<&str>) -> LimitRule {
    let t = t0();
    LimitRule {
        id: Uuid::now_v7(),
        org_id: org,
        scope,
        scope_id,
        model: model.map(str::to_owned),
        rpm: Some(60),
        tpm: None,
        concurrency: Some(3),
        created_at: t,
        updated_at: t,
    }
}

fn budget(org: OrgId, scope: ScopeType, scope_id: Uuid) -> BudgetRule {
    let t = t0();
    BudgetRule {
        id: Uuid::now_v7(),
        org_id: org,
        scope,
        scope_id,
        name: Some("monthly cap".into()),
        amount_micros: 12_500_000,
        currency: Currency::USD,
        period: Period::Monthly,
        policy: BudgetPolicy::Throttle,
        throttle_rpm: Some(5),
        thresholds: vec![50, 80, 100],
        webhook_url: Some("https://hooks.example.com/budget".into()),
        webhook_secret: Some(Secret::new("whsec_test".into())),
        alert_emails: vec!["ops@example.com".into()],
        created_at: t,
        updated_at: t,
    }
}

async fn plans_are_seeded_and_editable(db: &TestDb) {
    let store = db.store().await;
    let plans = store.list_plans().await.unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["enterprise", "free", "pro"]);
    let free = store.plan_by_name("free").await.unwrap().unwrap();
    assert_eq!(
        (free.rpm, free.tpm, free.concurrency, free.monthly_tokens),
        (Some(20), Some(40_000), Some(2), Some(1_000_000))
    );
    assert_eq!(free.monthly_spend_micros, None);
    assert_eq!(free.currency, Currency::USD);
    let pro = store.plan_by_name("pro").await.unwrap().unwrap();
    assert_eq!(pro.monthly_spend_micros, Some(500_000_000));
    assert_eq!(pro.monthly_tokens, None);
    let ent = store.plan_by_name("enterprise").await.unwrap().unwrap();
    assert_eq!((ent.monthly_tokens, ent.monthly_spend_micros), (None, None));
    assert_eq!(store.plan(pro.id).await.unwrap().unwrap(), pro);

    let t = t0();
    let mut team = Plan {
        id: Uuid::now_v7(),
        name: "team".into(),
        rpm: Some(100),
        tpm: None,
        concurrency: None,
        monthly_tokens: Some(5_000_000),
        monthly_spend_micros: None,
        currency: Currency::EUR,
        created_at: t,
        updated_at: t,
    };
    store.insert_plan(&team).await.unwrap();
    assert_eq!(store.plan(team.id).await.unwrap().unwrap(), team);
    let dup = Plan {
        id: Uuid::now_v7(),
        ..team.clone()
    };
    assert!(matches!(
        store.insert_plan(&dup).await,
        Err(StoreError::Conflict)
    ));
    team.rpm = None;
    team.monthly_spend_micros = Some(1_000_000);
    team.updated_at = t + Duration::seconds(1);
    assert!(store.update_plan(&team).await.unwrap());
    assert_eq!(store.plan(team.id).await.unwrap().unwrap(), team);
    team.name = "pro".into();
    assert!(matches!(
        store.update_plan(&team).await,
        Err(StoreError::Conflict)
    ));
    let ghost = Plan {
        id: Uuid::now_v7(),
        name: "ghost".into(),
        ..team
    };
    assert!(!store.update_plan(&ghost).await.unwrap());
    assert_eq!(store.plan_by_name("ghost").await.unwrap(), None);
}

async fn orgs_default_to_the_free_plan(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let org = a.personal_org.id;
    let free = store.plan_by_name("free").await.unwrap().unwrap();
    let pro = store.plan_by_name("pro").await.unwrap().unwrap();
    assert_eq!(
        store.org_plan(org, Some("free")).await.unwrap().unwrap(),
        free
    );
    assert_eq!(
        store.orgs_on_plan(free.id, Some("free")).await.unwrap(),
        vec![org]
    );
    assert!(
        store
            .orgs_on_plan(pro.id, Some("free"))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.set_org_plan(org, pro.id, t0()).await.unwrap());
    assert_eq!(
        store.org_plan(org, Some("free")).await.unwrap().unwrap(),
        pro
    );
    assert_eq!(
        store.orgs_on_plan(pro.id, Some("free")).await.unwrap(),
        vec![org]
    );
    assert!(
        store
            .orgs_on_plan(free.id, Some("free"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .set_org_plan(OrgId::new(), pro.id, t0())
            .await
            .unwrap()
    );
    assert_eq!(
        store.org_plan(OrgId::new(), Some("free")).await.unwrap(),
        None
    );

    let policy = store.org_policy(org, Some("free")).await.unwrap();
    assert_eq!(policy.plan, Some(pro));
    // Without a default plan, an org given none has no plan.
    let (_, b) = (0, second_user(&store, &a, "b@example.com").await);
    assert_eq!(store.org_plan(b.personal_org.id, None).await.unwrap(), None);
    assert!(store.orgs_on_plan(free.id, None).await.unwrap().is_empty());
    assert!(policy.limits.is_empty() && policy.budgets.is_empty());
}

async fn limits_are_org_scoped_and_unique_per_model(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let b = second_user(&store, &a, "b@example.com").await;
    let org = a.personal_org.id;
    let key = KeyId::new().as_uuid();
    let all = limit(org, ScopeType::Key, key, None);
    let gpt = limit(org, ScopeType::Key, key, Some("gpt-4o"));
    store.insert_limit(&all).await.unwrap();
    store.insert_limit(&gpt).await.unwrap();
    // A second all-models rule (NULL model) on the same scope is refused, like any duplicate.
    for dup in [
        limit(org, ScopeType::Key, key, None),
        limit(org, ScopeType::Key, key, Some("gpt-4o")),
    ] {
        assert!(matches!(
            store.insert_limit(&dup).await,
            Err(StoreError::Conflict)
        ));
    }
    // The same rule on another scope type or in another org is fine.
    store
        .insert_limit(&limit(org, ScopeType::User, key, None))
        .await
        .unwrap();
    let other = limit(b.personal_org.id, ScopeType::Key, key, None);
    store.insert_limit(&other).await.unwrap();

    let listed = store.list_limits(org).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], all);
    assert_eq!(listed[1], gpt);
    assert_eq!(store.limit(org, gpt.id).await.unwrap().unwrap(), gpt);
    assert_eq!(store.limit(org, other.id).await.unwrap(), None);

    let mut changed = gpt.clone();
    changed.model = Some("claude".into());
    changed.rpm = None;
    changed.tpm = Some(10_000);
    changed.updated_at = gpt.updated_at + Duration::seconds(1);
    assert!(store.update_limit(&changed).await.unwrap());
    assert_eq!(store.limit(org, gpt.id).await.unwrap().unwrap(), changed);
    // Moving it onto the all-models rule's slot conflicts.
    changed.model = None;
    assert!(matches!(
        store.update_limit(&changed).await,
        Err(StoreError::Conflict)
    ));
    // Another org cannot touch it.
    let foreign = LimitRule {
        org_id: b.personal_org.id,
        ..gpt.clone()
    };
    assert!(!store.update_limit(&foreign).await.unwrap());
    assert!(!store.delete_limit(b.personal_org.id, gpt.id).await.unwrap());
    assert!(store.delete_limit(org, gpt.id).await.unwrap());
    assert!(!store.delete_limit(org, gpt.id).await.unwrap());
    assert_eq!(store.list_limits(org).await.unwrap().len(), 2);
    assert_eq!(
        store
            .org_policy(org, Some("free"))
            .await
            .unwrap()
            .limits
            .len(),
        2
    );
}

async fn budgets_round_trip_with_secrets(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let org = a.personal_org.id;
    let b = budget(org, ScopeType::Org, org.as_uuid());
    store.insert_budget(&b).await.unwrap();
    let got = store.budget(org, b.id).await.unwrap().unwrap();
    assert_eq!(got, b);
    assert_eq!(got.webhook_secret.unwrap().expose(), "whsec_test");
    assert_eq!(store.budget(OrgId::new(), b.id).await.unwrap(), None);

    let mut plain = budget(org, ScopeType::User, a.user.id.as_uuid());
    plain.name = None;
    plain.policy = BudgetPolicy::Block;
    plain.throttle_rpm = None;
    plain.webhook_url = None;
    plain.webhook_secret = None;
    plain.alert_emails = vec![];
    plain.period = Period::Total;
    store.insert_budget(&plain).await.unwrap();
    assert_eq!(
        store.list_budgets(org).await.unwrap(),
        vec![b.clone(), plain.clone()]
    );

    let mut edited = b.clone();
    edited.amount_micros = 1;
    edited.currency = Currency::CNY;
    edited.period = Period::Daily;
    edited.webhook_secret = Some(Secret::new("whsec_rotated".into()));
    edited.thresholds = vec![100];
    edited.updated_at = b.updated_at + Duration::seconds(1);
    assert!(store.update_budget(&edited).await.unwrap());
    assert_eq!(store.budget(org, b.id).await.unwrap().unwrap(), edited);
    let foreign = BudgetRule {
        org_id: OrgId::new(),
        ..edited.clone()
    };
    assert!(!store.update_budget(&foreign).await.unwrap());
    assert!(!store.delete_budget(OrgId::new(), b.id).await.unwrap());

    let policy = store.org_policy(org, Some("free")).await.unwrap();
    assert_eq!(policy.budgets, vec![edited, plain.clone()]);
    assert!(store.delete_budget(org, b.id).await.unwrap());
    assert_eq!(store.list_budgets(org).await.unwrap(), vec![plain]);
}

fn usage(
    org: OrgId,
    user: Option<UserId>,
    key: Option<KeyId>,
    team: Option<TeamId>,
    at: DateTime<Utc>,
    cost: i64,
    currency: Currency,
) -> UsageRecord {
    UsageRecord {
        request_id: Uuid::now_v7(),
        org_id: org,
        user_id: user,
        key_id: key,
        team_id: team,
        endpoint: "chat.completions".into(),
        model: "gpt-4o".into(),
        provider: Some("openai".into()),
        upstream_model: None,
        prompt_tokens: 10,
        completion_tokens: 5,
        cached_tokens: 2,
        cost_micros: cost,
        currency,
        status: 200,
        error_code: None,
        latency_ms: 100,
        ttft_ms: None,
        streamed: false,
        estimated: false,
        created_at: at,
    }
}

async fn spend_and_tokens_are_summed_by_scope(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let org = a.personal_org.id;
    let user = a.user.id;
    let (k1, k2) = (KeyId::new(), KeyId::new());
    let team = TeamId::new();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let usd = Currency::USD;
    store
        .insert_usage(&[
            usage(
                org,
                Some(user),
                Some(k1),
                None,
                at("2026-10-31T23:59:00Z"),
                1_000,
                usd,
            ),
            usage(
                org,
                Some(user),
                Some(k1),
                None,
                at("2026-11-01T00:00:00Z"),
                200,
                usd,
            ),
            usage(
                org,
                Some(user),
                Some(k1),
                Some(team),
                at("2026-11-02T12:00:00Z"),
                30,
                usd,
            ),
            usage(
                org,
                Some(user),
                Some(k2),
                None,
                at("2026-11-03T08:00:00Z"),
                4,
                usd,
            ),
            usage(
                org,
                None,
                None,
                None,
                at("2026-11-03T09:00:00Z"),
                5_000,
                Currency::CNY,
            ),
            usage(
                OrgId::new(),
                Some(user),
                Some(k1),
                None,
                at("2026-11-03T09:00:00Z"),
                7,
                usd,
            ),
        ])
        .await
        .unwrap();
    // Mid-day `since`: the whole day of `since` counts (rollups are daily).
    let nov = at("2026-11-01T15:00:00Z");
    let spent = |scope, id, since, cur| store.spent_since(org, scope, id, since, cur);
    assert_eq!(
        spent(ScopeType::Key, k1.as_uuid(), nov, usd).await.unwrap(),
        230
    );
    assert_eq!(
        spent(ScopeType::Key, k2.as_uuid(), nov, usd).await.unwrap(),
        4
    );
    assert_eq!(
        spent(ScopeType::User, user.as_uuid(), nov, usd)
            .await
            .unwrap(),
        234
    );
    assert_eq!(
        spent(ScopeType::Team, team.as_uuid(), nov, usd)
            .await
            .unwrap(),
        30
    );
    assert_eq!(
        spent(ScopeType::Org, org.as_uuid(), nov, usd)
            .await
            .unwrap(),
        234
    );
    assert_eq!(
        spent(ScopeType::Org, org.as_uuid(), nov, Currency::CNY)
            .await
            .unwrap(),
        5_000
    );
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    assert_eq!(
        spent(ScopeType::Org, org.as_uuid(), epoch, usd)
            .await
            .unwrap(),
        1_234
    );
    assert_eq!(
        spent(ScopeType::Key, KeyId::new().as_uuid(), epoch, usd)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.tokens_since(org, nov).await.unwrap(), 4 * 15);
    assert_eq!(store.tokens_since(org, epoch).await.unwrap(), 5 * 15);
    assert_eq!(store.tokens_since(OrgId::new(), epoch).await.unwrap(), 0);
}

async fn members_can_be_added(db: &TestDb) {
    let (store, a) = seeded(db, "a@example.com").await;
    let org = a.personal_org.id;
    let b = second_user(&store, &a, "b@example.com").await;
    store
        .add_member(org, b.user.id, Role::Viewer, t0())
        .await
        .unwrap();
    let m = store.membership(org, b.user.id).await.unwrap().unwrap();
    assert_eq!(m.role, Role::Viewer);
    assert!(matches!(
        store.add_member(org, b.user.id, Role::Admin, t0()).await,
        Err(StoreError::Conflict)
    ));
}
