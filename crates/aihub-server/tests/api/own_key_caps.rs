//! A member who manages limits and budgets only on their own keys cannot give a key more than
//! the organization gave them: no key limit above the tightest limit of the same kind on their
//! user (same metric, same model or every model), no key budget above the tightest budget on
//! their user with the same period and currency. Owners and Admins can; the member can still
//! lower what an Admin set.

use aihub_core::Role;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Signed, TestApp, api_tests, error_code, spawn_app};
use crate::limits::join;

api_tests!(
    own_key_limits_stay_within_the_user_limits,
    own_key_budgets_stay_within_the_user_budgets
);

/// An organization with a member who owns one key in it; returns (owner, member, key id).
async fn member_with_key(app: &TestApp) -> (Signed, Signed, String) {
    let owner = app.signup("owner@example.com").await;
    let member = app.signup("member@example.com").await;
    join(app, &owner.org_id, &member, Role::Member).await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/keys", owner.org_id),
            &member.token,
            json!({"name": "member's"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (owner, member, key)
}

/// The status and error code (empty on success) of a response; its `id` on success.
async fn outcome(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    let what = if status.is_success() {
        body["id"].as_str().unwrap_or_default().to_owned()
    } else {
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (status, what)
}

async fn own_key_limits_stay_within_the_user_limits(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (owner, member, key) = member_with_key(&app).await;
    let base = format!("/api/v1/orgs/{}/limits", owner.org_id);
    let on_key = |extra: Value| {
        let mut body = json!({"scope_type": "key", "scope_id": key});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    // Without a limit on their user, a member sets what they like on their own key.
    let (status, free) = outcome(
        app.post(
            &base,
            &member.token,
            on_key(json!({"model": "free-model", "rpm": 5000})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // The owner limits the member: 100 rpm on every model, 1000 tpm on mock-chat.
    for body in [
        json!({"scope_type": "user", "scope_id": member.user_id, "rpm": 100}),
        json!({"scope_type": "user", "scope_id": member.user_id, "model": "mock-chat", "tpm": 1000}),
    ] {
        let r = app.post(&base, &owner.token, body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // Above the user's limit: refused, whatever the model, with a clear code.
    for extra in [
        json!({"rpm": 101}),
        json!({"model": "mock-chat", "rpm": 500}),
        json!({"model": "mock-chat", "tpm": 1001}),
        json!({"rpm": 50, "model": "mock-chat", "tpm": 2000}),
    ] {
        let r = app.post(&base, &member.token, on_key(extra.clone())).await;
        assert_eq!(
            outcome(r).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "above_user_limit".to_owned()
            ),
            "{extra}"
        );
    }
    // Within it — or a metric the user has no limit on, or a model their model limit is not
    // about: allowed.
    let (status, within) = outcome(
        app.post(
            &base,
            &member.token,
            on_key(json!({"rpm": 100, "tpm": 99999})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = outcome(
        app.post(
            &base,
            &member.token,
            on_key(json!({"model": "mock-embedding", "tpm": 5000, "concurrency": 50})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Raising it past the user's limit is refused; lowering is not.
    let r = app
        .patch(
            &format!("{base}/{within}"),
            &member.token,
            json!({"rpm": 150}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "above_user_limit");
    let r = app
        .patch(
            &format!("{base}/{within}"),
            &member.token,
            json!({"rpm": 80}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Moving a rule to a model the user is held to is checked like a new rule.
    let r = app
        .patch(
            &format!("{base}/{free}"),
            &member.token,
            json!({"model": "mock-chat"}),
        )
        .await;
    assert_eq!(error_code(r).await, "above_user_limit");

    // An Owner may set more on the member's key; the member may lower it but not raise it.
    let (status, generous) = outcome(
        app.post(
            &base,
            &owner.token,
            on_key(json!({"model": "mock-chat", "rpm": 1000})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = app
        .patch(
            &format!("{base}/{generous}"),
            &member.token,
            json!({"rpm": 500}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .patch(
            &format!("{base}/{generous}"),
            &member.token,
            json!({"rpm": 600}),
        )
        .await;
    assert_eq!(error_code(r).await, "above_user_limit");
    // Editing another metric leaves an Admin's higher value alone.
    let r = app
        .patch(
            &format!("{base}/{generous}"),
            &member.token,
            json!({"concurrency": 2}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn own_key_budgets_stay_within_the_user_budgets(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (owner, member, key) = member_with_key(&app).await;
    let base = format!("/api/v1/orgs/{}/budgets", owner.org_id);
    let on_key = |amount: &str, period: &str, currency: &str| json!({"scope_type": "key", "scope_id": key, "amount": amount, "period": period, "currency": currency});
    // Two monthly USD budgets on the member's user: the tighter one counts.
    for amount in ["50", "10"] {
        let r = app
            .post(
                &base,
                &owner.token,
                json!({"scope_type": "user", "scope_id": member.user_id, "amount": amount, "period": "monthly"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    let r = app
        .post(&base, &member.token, on_key("10.01", "monthly", "USD"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "above_user_budget");
    // Another period or currency is not the same kind of budget.
    for (period, currency) in [("daily", "USD"), ("monthly", "EUR")] {
        let r = app
            .post(&base, &member.token, on_key("20", period, currency))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{period} {currency}");
    }
    let (status, within) = outcome(
        app.post(&base, &member.token, on_key("10", "monthly", "USD"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = app
        .patch(
            &format!("{base}/{within}"),
            &member.token,
            json!({"amount": "15"}),
        )
        .await;
    assert_eq!(error_code(r).await, "above_user_budget");
    let r = app
        .patch(
            &format!("{base}/{within}"),
            &member.token,
            json!({"amount": "5"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Switching an EUR budget to USD is checked against the USD budgets.
    let (_, eur) = outcome(
        app.post(&base, &member.token, on_key("30", "weekly", "EUR"))
            .await,
    )
    .await;
    let r = app
        .patch(
            &format!("{base}/{eur}"),
            &member.token,
            json!({"currency": "USD", "period": "monthly"}),
        )
        .await;
    assert_eq!(error_code(r).await, "above_user_budget");

    // An Admin may give the key more.
    let r = app
        .post(&base, &owner.token, on_key("100", "monthly", "USD"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}
