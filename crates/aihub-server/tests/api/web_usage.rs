//! The usage page and the overview's bars over real HTTP: figures per model, key, user and team
//! read from the daily rollups (they stay when the raw records are gone), SVG charts with hover
//! titles, the request table and its "older" pages, the CSV download with formulas defused,
//! refused ranges in both languages, escaped names, other tenants refused; on the overview, the
//! plan quota and budgets as bars with their state, and the recent failed requests.

use aihub_core::time::now;
use aihub_core::{Currency, KeyId, OrgId, TeamId, UserId};
use aihub_store::{BackendKind, UsageRecord};
use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, api_tests, spawn_app};
use crate::web_client::{Browser, field, location, text_of};

api_tests!(
    usage_is_split_by_model_key_user_and_team_from_the_rollups,
    requests_page_back_and_the_csv_downloads_the_split,
    ranges_are_checked_in_the_readers_language,
    usage_of_other_organizations_is_refused,
    the_overview_shows_quota_budgets_and_recent_errors,
);

const SCRIPT_KEY: &str = "<script>alert(1)</script>";
/// The same, as askama escapes it.
const SCRIPT_ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

#[allow(clippy::too_many_arguments, reason = "one record's fields")]
fn record(
    org: OrgId,
    user: Option<UserId>,
    team: Option<TeamId>,
    key: Option<KeyId>,
    model: &str,
    at: DateTime<Utc>,
    cost_micros: i64,
    currency: Currency,
    status: i32,
) -> UsageRecord {
    UsageRecord {
        request_id: Uuid::now_v7(),
        org_id: org,
        user_id: user,
        key_id: key,
        team_id: team,
        endpoint: "chat.completions".into(),
        model: model.into(),
        provider: Some("mock".into()),
        upstream_model: Some(model.into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        cached_tokens: 0,
        cost_micros,
        currency,
        status,
        error_code: (status != 200).then(|| "upstream_error".to_owned()),
        latency_ms: 42,
        ttft_ms: None,
        streamed: false,
        estimated: false,
        created_at: at,
    }
}

/// An owner signed in in a browser, with a key named like a script and a team.
struct Setup {
    b: Browser,
    token: String,
    org: OrgId,
    user: UserId,
    key: KeyId,
    team: TeamId,
}

async fn setup(app: &TestApp) -> Setup {
    let b = Browser::new(app);
    b.sign_up("ada@example.com", "Ada Owner").await;
    b.sign_in("ada@example.com").await;
    let token = b.session_token();
    let me: Value = app.get("/api/v1/me", &token).await.json().await.unwrap();
    let user: UserId = me["id"].as_str().unwrap().parse().unwrap();
    let html = b.page("/keys").await;
    let org: OrgId = field(&html, "org").parse().unwrap();
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/keys"),
            &token,
            json!({"name": SCRIPT_KEY}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key: KeyId = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/teams"),
            &token,
            json!({"name": "Blue team"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let team: TeamId = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Setup {
        b,
        token,
        org,
        user,
        key,
        team,
    }
}

/// Yesterday noon and today's first minute, UTC.
fn days() -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now().date_naive().and_hms_opt(0, 1, 0).unwrap().and_utc();
    (today - Duration::hours(12), today)
}

/// The `<tr id="{id}">…</tr>` element.
fn row<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<tr id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id} in {html}"));
    let end = html[start..].find("</tr>").unwrap();
    &html[start..start + end]
}

/// The rows of the group table as (name, requests, errors, tokens, spend) text.
fn groups(html: &str) -> Vec<(String, String, String, String, String)> {
    let mut out = Vec::new();
    for i in 1.. {
        let id = format!("usage-group-{i}");
        if !html.contains(&format!("<tr id=\"{id}\"")) {
            break;
        }
        let r = row(html, &id);
        let cell = |class: &str| {
            let marker = format!("class=\"{class}");
            let start = r.find(&marker).unwrap();
            let start = start + r[start..].find('>').unwrap() + 1;
            let end = r[start..].find("</td>").unwrap();
            r[start..start + end]
                .replace("<span class=\"money\">", "")
                .replace("</span>", " ")
                .trim()
                .to_owned()
        };
        out.push((
            cell("name"),
            cell("requests"),
            cell("errors"),
            cell("tokens"),
            cell("spend"),
        ));
    }
    out
}

async fn usage_is_split_by_model_key_user_and_team_from_the_rollups(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = setup(&app).await;
    let (yesterday, today) = days();
    let store = &app.state.services.store;
    let with_all = |model, at, cost, currency, status| {
        record(
            s.org,
            Some(s.user),
            Some(s.team),
            Some(s.key),
            model,
            at,
            cost,
            currency,
            status,
        )
    };
    store
        .insert_usage(&[
            with_all("gpt-4o", yesterday, 1_500_000, Currency::USD, 200),
            with_all("gpt-4o", today, 1_500_000, Currency::USD, 200),
            with_all("claude", today, 2_000_000, Currency::CNY, 200),
            record(
                s.org,
                None,
                None,
                None,
                "gpt-4o",
                today,
                250,
                Currency::USD,
                500,
            ),
        ])
        .await
        .unwrap();
    // Another organization's usage never shows.
    store
        .insert_usage(&[record(
            OrgId::new(),
            None,
            None,
            None,
            "other-org-model",
            today,
            9,
            Currency::USD,
            200,
        )])
        .await
        .unwrap();
    // The totals are read from the rollups: they stay when the raw records are gone.
    store
        .tamper_with_audit_log("DELETE FROM usage_records")
        .await
        .unwrap();

    let range = format!(
        "org={}&from={}&to={}",
        s.org,
        yesterday.date_naive(),
        today.date_naive()
    );
    let html = s.b.page(&format!("/usage?{range}")).await;
    assert!(html.contains("id=\"nav-usage\" href=\"/usage?org="));
    assert!(html.contains("aria-current=\"page\">Usage</a>"));
    assert_eq!(text_of(&html, "usage-total-requests"), "4");
    assert_eq!(text_of(&html, "usage-total-errors"), "1");
    assert_eq!(text_of(&html, "usage-total-tokens"), "60");
    assert!(
        html.contains("id=\"usage-total-spend\"><span class=\"money\">USD 3.00025</span><span class=\"money\">CNY 2</span>"),
        "{html}"
    );
    assert_eq!(field(&html, "from"), yesterday.date_naive().to_string());
    assert!(!html.contains("other-org-model"));
    assert!(
        html.contains("id=\"usage-no-requests\""),
        "raw records are gone"
    );
    // By model (the default): most requests first.
    assert_eq!(
        groups(&html),
        [
            (
                "gpt-4o".into(),
                "3".into(),
                "1".into(),
                "45".into(),
                "USD 3.00025".into()
            ),
            (
                "claude".into(),
                "1".into(),
                "0".into(),
                "15".into(),
                "CNY 2".into()
            ),
        ]
    );
    // Charts: one per figure, a cost chart per currency, values on hover.
    for id in [
        "chart-requests",
        "chart-tokens",
        "chart-cost-USD",
        "chart-cost-CNY",
    ] {
        assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    let today_s = today.date_naive().to_string();
    let yesterday_s = yesterday.date_naive().to_string();
    assert!(html.contains(&format!("<title>{yesterday_s} · gpt-4o: 1</title>")));
    assert!(html.contains(&format!("<title>{today_s} · gpt-4o: 2</title>")));
    assert!(html.contains(&format!("<title>{today_s} · claude: 15</title>")));
    assert!(html.contains(&format!("<title>{today_s} · gpt-4o: 1.50025</title>")));
    assert!(!html.contains(" style="), "no inline style under the CSP");

    // By key: the key's name, escaped, and "No key".
    let html = s.b.page(&format!("/usage?{range}&by=key")).await;
    let g = groups(&html);
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].0, SCRIPT_ESCAPED);
    assert_eq!(g[0].1, "3");
    assert_eq!(g[1].0, "No key");
    assert!(!html.contains(SCRIPT_KEY));
    assert!(html.contains("<title>") && html.contains(&format!("{SCRIPT_ESCAPED}: ")));

    // By user and by team: names, and requests outside any.
    let html = s.b.page(&format!("/usage?{range}&by=user")).await;
    let g = groups(&html);
    assert_eq!((g[0].0.as_str(), g[0].1.as_str()), ("Ada Owner", "3"));
    assert_eq!((g[1].0.as_str(), g[1].1.as_str()), ("No user", "1"));
    let html = s.b.page(&format!("/usage?{range}&by=team")).await;
    let g = groups(&html);
    assert_eq!((g[0].0.as_str(), g[0].1.as_str()), ("Blue team", "3"));
    assert_eq!((g[1].0.as_str(), g[1].1.as_str()), ("No team", "1"));
    assert!(html.contains("<option value=\"team\" selected>"));

    // Only today: yesterday's request is out of range.
    let html =
        s.b.page(&format!("/usage?org={}&from={today_s}&to={today_s}", s.org))
            .await;
    assert_eq!(text_of(&html, "usage-total-requests"), "3");

    // In Chinese.
    let r = s.b.get("/lang/zh-CN?next=/usage").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = s.b.page(&format!("/usage?{range}&by=key")).await;
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(html.contains("用量"));
    assert!(html.contains("合计"));
    assert!(html.contains("无密钥"));
    assert!(html.contains("下载 CSV 文件"));
    let _ = s.token;
}

async fn requests_page_back_and_the_csv_downloads_the_split(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = setup(&app).await;
    let (yesterday, today) = days();
    let store = &app.state.services.store;
    // 30 requests today, one a second; the newest first on the page.
    let records: Vec<UsageRecord> = (0..30)
        .map(|i| {
            let mut r = record(
                s.org,
                Some(s.user),
                None,
                Some(s.key),
                "gpt-4o",
                today + Duration::seconds(i),
                100,
                Currency::USD,
                200,
            );
            r.request_id = Uuid::now_v7();
            r
        })
        .collect();
    store.insert_usage(&records).await.unwrap();
    store
        .insert_usage(&[
            record(
                s.org,
                None,
                None,
                None,
                "=HYPERLINK(\"http://x\")",
                yesterday,
                7,
                Currency::USD,
                200,
            ),
            record(
                s.org,
                None,
                None,
                None,
                "gpt-4o",
                yesterday,
                3,
                Currency::CNY,
                200,
            ),
        ])
        .await
        .unwrap();

    let html = s.b.page(&format!("/usage?org={}", s.org)).await;
    assert_eq!(text_of(&html, "usage-total-requests"), "32");
    let newest = &records[29];
    let first = row(&html, &format!("request-{}", newest.request_id));
    assert!(
        first.contains(SCRIPT_ESCAPED),
        "the key's name, escaped: {first}"
    );
    assert!(first.contains("USD 0.0001"));
    assert!(first.contains(">200<"));
    let shown = html.matches("<tr id=\"request-").count();
    assert_eq!(shown, 25);
    let older =
        html.find("id=\"usage-older\" href=\"").unwrap() + "id=\"usage-older\" href=\"".len();
    let older = html[older..older + html[older..].find('"').unwrap()].replace("&#38;", "&");
    let html = s.b.page(&older).await;
    assert_eq!(html.matches("<tr id=\"request-").count(), 7);
    assert!(html.contains(&format!("request-{}", records[0].request_id)));
    assert!(!html.contains(&format!("request-{}", newest.request_id)));
    assert!(!html.contains("id=\"usage-older\""));

    // The CSV of the range: one line per day, group and currency; formulas defused.
    let (from, to) = (yesterday.date_naive(), today.date_naive());
    let r =
        s.b.get(&format!(
            "/usage.csv?org={}&from={from}&to={to}&by=model",
            s.org
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()[CONTENT_DISPOSITION].to_str().unwrap(),
        format!("attachment; filename=\"usage-{from}-{to}-model.csv\"")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(
        lines[0],
        "day,group_by,group_id,group,currency,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_micros,cost"
    );
    assert!(
        lines.contains(
            &format!("{from},model,,\"'=HYPERLINK(\"\"http://x\"\")\",USD,1,0,10,5,0,7,0.000007")
                .as_str()
        ),
        "{csv}"
    );
    assert!(
        lines.contains(&format!("{from},model,,gpt-4o,CNY,1,0,10,5,0,3,0.000003").as_str()),
        "{csv}"
    );
    assert!(
        lines.contains(&format!("{to},model,,gpt-4o,USD,30,0,300,150,0,3000,0.003").as_str()),
        "{csv}"
    );
    // By key: the id and the name (a formula-looking name would be defused too).
    let csv =
        s.b.get(&format!(
            "/usage.csv?org={}&from={from}&to={to}&by=key",
            s.org
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(&format!("{to},key,{},{SCRIPT_KEY},USD,30,", s.key)),
        "{csv}"
    );
    assert!(csv.contains(&format!("{from},key,,No key,USD,1,")), "{csv}");
    // The JSON API splits the same way.
    let r = app
        .get(
            &format!(
                "/api/v1/orgs/{}/usage?from={from}&to={to}&group_by=user",
                s.org
            ),
            &s.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert!(
        data.iter()
            .any(|b| b["group"] == s.user.to_string() && b["requests"] == 30)
    );
    assert!(
        data.iter()
            .any(|b| b["group"].is_null() && b["currency"] == "CNY")
    );
}

async fn ranges_are_checked_in_the_readers_language(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = setup(&app).await;
    let org = s.org;
    for (query, message) in [
        (
            "from=2026-03-02&to=2026-03-01",
            "The start date is after the end date.",
        ),
        (
            "from=2025-01-01&to=2026-01-02",
            "A range covers at most 366 days.",
        ),
        ("from=2026-02-30", "Enter dates as YYYY-MM-DD."),
        ("by=week", "Split by model, key, user or team."),
    ] {
        for path in ["/usage", "/usage.csv"] {
            let r = s.b.get(&format!("{path}?org={org}&{query}")).await;
            assert_eq!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path}?{query}"
            );
            let html = r.text().await.unwrap();
            assert_eq!(text_of(&html, "usage-error"), message);
            assert!(html.contains("id=\"usage-filter\""), "the form stays");
        }
    }
    // A full year is fine.
    let r =
        s.b.get(&format!("/usage?org={org}&from=2025-01-01&to=2026-01-01"))
            .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"usage-no-data\""));
    assert!(html.contains("<svg id=\"chart-requests\""));

    s.b.get("/lang/zh-CN?next=/").await;
    let r =
        s.b.get(&format!("/usage?org={org}&from=2026-03-02&to=2026-03-01"))
            .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&r.text().await.unwrap(), "usage-error"),
        "开始日期晚于结束日期。"
    );
}

async fn usage_of_other_organizations_is_refused(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = setup(&app).await;
    let (_, today) = days();
    app.state
        .services
        .store
        .insert_usage(&[record(
            s.org,
            None,
            None,
            None,
            "secret-model",
            today,
            1,
            Currency::USD,
            500,
        )])
        .await
        .unwrap();
    let other = Browser::new(&app);
    other.sign_up("eve@example.com", "Eve").await;
    other.sign_in("eve@example.com").await;
    for path in [
        format!("/usage?org={}", s.org),
        format!("/usage.csv?org={}", s.org),
        format!("/?org={}", s.org),
    ] {
        let r = other.get(&path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let html = r.text().await.unwrap();
        assert_eq!(text_of(&html, "error-code"), "not_found");
        assert!(!html.contains("secret-model"));
    }
    // Eve's own pages show none of it.
    let html = other.page("/usage").await;
    assert!(!html.contains("secret-model"));
    let html = other.page("/").await;
    assert!(html.contains("id=\"no-recent-errors\""));
    // Once Eve is a Viewer of the organization, she reads its usage like its owner: every role
    // may read usage, and these pages change nothing.
    let me: Value = app
        .get("/api/v1/me", &other.session_token())
        .await
        .json()
        .await
        .unwrap();
    let eve: UserId = me["id"].as_str().unwrap().parse().unwrap();
    app.state
        .services
        .store
        .add_member(s.org, eve, aihub_core::Role::Viewer, now())
        .await
        .unwrap();
    let html = other.page(&format!("/usage?org={}", s.org)).await;
    assert_eq!(text_of(&html, "usage-total-requests"), "1");
    assert!(html.contains("secret-model"));
    assert!(!html.contains("method=\"post\" action=\"/usage"));
    let html = other.page(&format!("/?org={}", s.org)).await;
    assert_eq!(html.matches("<tr id=\"error-").count(), 1);
    // Signed out: to the sign-in page, and back.
    let anonymous = Browser::new(&app);
    let r = anonymous.get("/usage.csv?by=key").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=/usage.csv%3Fby%3Dkey");
}

async fn the_overview_shows_quota_budgets_and_recent_errors(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let s = setup(&app).await;
    let html = s.b.page("/").await;
    assert!(html.contains("id=\"no-plan\""));
    assert!(html.contains("id=\"no-budgets\""));
    assert!(html.contains("id=\"no-recent-errors\""));

    let root = app.platform_admin().await;
    let r = app
        .post(
            "/api/v1/admin/plans",
            &root,
            json!({"name": "small", "monthly_tokens": 100, "monthly_spend": "10"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/orgs/{}/plan", s.org),
            Some(&root),
        )
        .json(&json!({"plan": "small"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let budgets = format!("/api/v1/orgs/{}/budgets", s.org);
    for body in [
        json!({"scope_type": "org", "amount": "2", "period": "monthly", "name": "all of us"}),
        json!({"scope_type": "key", "scope_id": s.key.to_string(), "amount": "1", "period": "daily"}),
        json!({"scope_type": "team", "scope_id": s.team.to_string(), "amount": "100", "period": "total"}),
    ] {
        let r = app.post(&budgets, &s.token, body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    }
    let list: Value = app.get(&budgets, &s.token).await.json().await.unwrap();
    let id_of = |scope: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["scope_type"] == scope)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (org_budget, key_budget, team_budget) = (id_of("org"), id_of("key"), id_of("team"));

    let (_, today) = days();
    let store = &app.state.services.store;
    let mut failed = Vec::new();
    // Five calls of 15 tokens (75 of 100: below the warning), 1.7 USD of spend.
    let mut records: Vec<UsageRecord> = (0..4)
        .map(|i| {
            record(
                s.org,
                Some(s.user),
                Some(s.team),
                Some(s.key),
                "gpt-4o",
                today + Duration::seconds(i),
                400_000,
                Currency::USD,
                200,
            )
        })
        .collect();
    for i in 0..12 {
        let mut r = record(
            s.org,
            Some(s.user),
            None,
            None,
            "claude",
            today + Duration::seconds(10 + i),
            0,
            Currency::USD,
            502,
        );
        r.prompt_tokens = 0;
        r.completion_tokens = 0;
        failed.push(r.request_id);
        records.push(r);
    }
    records.push(record(
        s.org,
        Some(s.user),
        None,
        None,
        "gpt-4o",
        today + Duration::seconds(30),
        100_000,
        Currency::USD,
        200,
    ));
    store.insert_usage(&records).await.unwrap();

    let html = s.b.page("/").await;
    assert_eq!(text_of(&html, "plan-name"), "small");
    let meter = |id: &str| {
        let start = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id}"));
        &html[start..start + html[start..].find("</svg>").unwrap()]
    };
    let tokens = meter("quota-tokens");
    assert!(
        tokens.contains("data-percent=\"75\" data-state=\"ok\""),
        "{tokens}"
    );
    assert!(tokens.contains("<span class=\"used\">75</span> / <span class=\"limit\">100</span>"));
    assert!(tokens.contains("<rect class=\"fill\" x=\"0\" y=\"0\" width=\"75\""));
    let spend = meter("quota-spend");
    assert!(spend.contains("data-percent=\"17\""), "{spend}");
    assert!(spend.contains("USD 1.7"));
    // The org budget (2 USD a month) is at 85 %: warned; the key's (1 USD a day) is spent.
    let org_bar = meter(&format!("budget-{org_budget}"));
    assert!(
        org_bar.contains("data-percent=\"85\" data-state=\"warn\""),
        "{org_bar}"
    );
    assert!(org_bar.contains("all of us"));
    assert!(org_bar.contains("per month"));
    let key_bar = meter(&format!("budget-{key_budget}"));
    assert!(
        key_bar.contains("data-percent=\"160\" data-state=\"over\""),
        "{key_bar}"
    );
    assert!(key_bar.contains(SCRIPT_ESCAPED), "{key_bar}");
    assert!(key_bar.contains("<rect class=\"fill\" x=\"0\" y=\"0\" width=\"100\""));
    let team_bar = meter(&format!("budget-{team_budget}"));
    assert!(
        team_bar.contains("Blue team") && team_bar.contains("data-percent=\"1\""),
        "{team_bar}"
    );
    assert!(!html.contains(SCRIPT_KEY));

    // The last ten failures, newest first.
    let errors = &html[html.find("id=\"recent-errors\"").unwrap()..];
    assert_eq!(errors.matches("<tr id=\"error-").count(), 10);
    let newest = errors.find(&format!("error-{}", failed[11])).unwrap();
    let older = errors.find(&format!("error-{}", failed[2])).unwrap();
    assert!(newest < older);
    assert!(!errors.contains(&format!("error-{}", failed[1])));
    let r = row(errors, &format!("error-{}", failed[11]));
    assert!(
        r.contains(">502<") && r.contains("upstream_error") && r.contains("claude"),
        "{r}"
    );
    // The figures that were there stay.
    assert_eq!(text_of(&html, "today-requests"), "17");
    assert_eq!(text_of(&html, "month-requests"), "17");

    // In Chinese.
    s.b.get("/lang/zh-CN?next=/").await;
    let html = s.b.page("/").await;
    assert!(html.contains("最近的错误"));
    assert!(html.contains("本月套餐额度"));
    assert!(html.contains("每月"));
}
