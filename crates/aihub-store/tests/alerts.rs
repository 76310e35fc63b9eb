//! Budget alert storage on SQLite and PostgreSQL: once per (budget, period, threshold), delivery
//! updates, org-scoped listing with pagination and a budget filter.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed step should fail the test loudly"
)]

use aihub_core::governance::{Period, ScopeType};
use aihub_core::time::now;
use aihub_core::{Currency, OrgId};
use aihub_store::testing::TestDb;
use aihub_store::{AlertChannel, BudgetAlert, Delivery, DeliveryStatus, NewBudgetAlert};
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
    a_threshold_is_recorded_once_per_period,
    delivery_state_is_updated_per_channel,
    alerts_are_org_scoped_and_paginate,
);

fn alert(org: OrgId, budget: Uuid, threshold: u32) -> NewBudgetAlert {
    let t = now();
    BudgetAlert {
        id: Uuid::now_v7(),
        org_id: org,
        budget_id: budget,
        budget_name: Some("monthly".into()),
        scope: ScopeType::Org,
        scope_id: org.as_uuid(),
        period: Period::Monthly,
        period_start: Period::Monthly.start(t),
        threshold_pct: threshold,
        spent_micros: 12_000_000,
        amount_micros: 15_000_000,
        currency: Currency::parse("USD").unwrap(),
        created_at: t,
        webhook: Delivery::initial(DeliveryStatus::Pending),
        email: Delivery::initial(DeliveryStatus::None),
    }
}

async fn a_threshold_is_recorded_once_per_period(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    let budget = Uuid::now_v7();
    let first = alert(org, budget, 80);
    assert!(store.insert_budget_alert(&first).await.unwrap());

    // Same budget, period and threshold under a new id: not inserted, not an error.
    let again = alert(org, budget, 80);
    assert!(!store.insert_budget_alert(&again).await.unwrap());
    assert!(
        store
            .get_budget_alert(org, again.id)
            .await
            .unwrap()
            .is_none()
    );

    // Another threshold, or the next period, fires on its own.
    assert!(
        store
            .insert_budget_alert(&alert(org, budget, 100))
            .await
            .unwrap()
    );
    let mut next = alert(org, budget, 80);
    next.period_start = first.period_start + Duration::days(40);
    assert!(store.insert_budget_alert(&next).await.unwrap());

    // Concurrent inserts of one crossing: exactly one wins.
    let racers: Vec<_> = (0..8).map(|_| alert(org, budget, 90)).collect();
    let results = insert_concurrently(&store, &racers).await;
    assert_eq!(results.iter().filter(|r| **r).count(), 1);

    let got = store
        .get_budget_alert(org, first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, first);
}

async fn insert_concurrently(store: &aihub_store::Store, alerts: &[NewBudgetAlert]) -> Vec<bool> {
    let mut set = tokio::task::JoinSet::new();
    for a in alerts {
        let store = store.clone();
        let a = a.clone();
        set.spawn(async move { store.insert_budget_alert(&a).await.unwrap() });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

async fn delivery_state_is_updated_per_channel(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    let a = alert(org, Uuid::now_v7(), 80);
    store.insert_budget_alert(&a).await.unwrap();

    let failing = Delivery {
        status: DeliveryStatus::Pending,
        attempts: 1,
        last_error: Some("HTTP 500".into()),
        delivered_at: None,
    };
    assert!(
        store
            .update_alert_delivery(a.id, AlertChannel::Webhook, &failing)
            .await
            .unwrap()
    );
    let delivered = Delivery {
        status: DeliveryStatus::Delivered,
        attempts: 2,
        last_error: Some("HTTP 500".into()),
        delivered_at: Some(now()),
    };
    store
        .update_alert_delivery(a.id, AlertChannel::Webhook, &delivered)
        .await
        .unwrap();
    let failed = Delivery {
        status: DeliveryStatus::Failed,
        attempts: 3,
        last_error: Some("connection refused".into()),
        delivered_at: None,
    };
    store
        .update_alert_delivery(a.id, AlertChannel::Email, &failed)
        .await
        .unwrap();

    let got = store.get_budget_alert(org, a.id).await.unwrap().unwrap();
    assert_eq!(got.webhook, delivered);
    assert_eq!(got.email, failed);
    assert_eq!(got.threshold_pct, 80);

    // An unknown alert is reported, not an error.
    assert!(
        !store
            .update_alert_delivery(Uuid::now_v7(), AlertChannel::Email, &failed)
            .await
            .unwrap()
    );
}

async fn alerts_are_org_scoped_and_paginate(db: &TestDb) {
    let store = db.store().await;
    let org = OrgId::new();
    let other = OrgId::new();
    let b1 = Uuid::now_v7();
    let b2 = Uuid::now_v7();
    let mut ids = Vec::new();
    for (budget, pct) in [(b1, 50), (b2, 50), (b1, 80), (b2, 80), (b1, 100)] {
        let a = alert(org, budget, pct);
        store.insert_budget_alert(&a).await.unwrap();
        ids.push(a.id);
    }
    let foreign = alert(other, Uuid::now_v7(), 80);
    store.insert_budget_alert(&foreign).await.unwrap();

    let page1 = store.list_budget_alerts(org, None, None, 2).await.unwrap();
    assert_eq!(
        page1.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let page2 = store
        .list_budget_alerts(org, None, Some(page1[1].id), 10)
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]]
    );

    let of_b1 = store
        .list_budget_alerts(org, Some(b1), None, 10)
        .await
        .unwrap();
    assert_eq!(
        of_b1.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ids[4], ids[2], ids[0]]
    );

    // Another organization's alert is invisible, by list and by id.
    assert!(
        store
            .get_budget_alert(org, foreign.id)
            .await
            .unwrap()
            .is_none()
    );
    let of_other = store
        .list_budget_alerts(other, None, None, 10)
        .await
        .unwrap();
    assert_eq!(of_other.len(), 1);
    assert!(
        store
            .list_budget_alerts(org, Some(foreign.budget_id), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
