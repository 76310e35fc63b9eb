//! Access control of the dashboard, generated from its routes: every page route that takes an
//! id (read from `src/web/`, so a new page is walked without anyone adding it here) is called
//! with another organization's object, by that organization's outsiders and by a signed-out
//! browser, as `GET` and as a form `POST` with a valid CSRF token and plausible fields. Every
//! call must be refused (the 404 page for a signed-in outsider, the sign-in page for a
//! signed-out browser) and leave a digest of every table unchanged.

use std::collections::BTreeMap;

use aihub_store::BackendKind;
use reqwest::StatusCode;

use crate::access::World;
use crate::helpers::api_tests;
use crate::surface::{Route, dashboard_routes, digest};
use crate::web_client::{Browser, field, location};

api_tests!(every_dashboard_id_route_refuses_outsiders_and_changes_nothing);

/// The management API's name for a dashboard placeholder: `{id}` is named by the path segment
/// before it (`/keys/{id}` → `key_id`); named placeholders keep their name.
fn api_placeholder(path: &str, placeholder: &str) -> String {
    if placeholder != "id" {
        return placeholder.to_owned();
    }
    let before = path
        .split("/{id}")
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_default();
    match before {
        "keys" => "key_id",
        "teams" => "team_id",
        "members" | "users" => "user_id",
        "invitations" => "invitation_id",
        "budgets" => "budget_id",
        "limits" => "limit_id",
        "alerts" => "alert_id",
        "plans" => "plan_id",
        "orgs" => "org_id",
        "providers" | "models" => "name",
        other => panic!("no API name for {{id}} after /{other}/ in {path}: add it here"),
    }
    .to_owned()
}

/// The dashboard route with its placeholders renamed as the API names them, under `/api/v1` so
/// that [`World::fixtures`] creates the right objects (platform objects for `/admin/`).
fn as_api_route(route: &Route) -> Route {
    let mut path = route.path.clone();
    for p in route.placeholders() {
        path = path.replacen(
            &format!("{{{p}}}"),
            &format!("{{{}}}", api_placeholder(&route.path, &p)),
            1,
        );
    }
    Route {
        method: route.method.clone(),
        path: format!("/api/v1{path}"),
    }
}

/// Fields a dashboard form may ask for, with values its validation accepts, so that a refusal
/// can only come from the ownership check and not from a malformed form.
const FORM_FIELDS: &[(&str, &str)] = &[
    ("name", "renamed"),
    ("role", "member"),
    ("email", "someone@c.example"),
    ("models", ""),
    ("amount", "5"),
    ("currency", "USD"),
    ("period", "monthly"),
    ("scope", "org"),
    ("rpm", "10"),
    ("tpm", "1000"),
    ("confirm", "Org A"),
    ("user_id", ""),
    ("plan", ""),
];

async fn every_dashboard_id_route_refuses_outsiders_and_changes_nothing(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let routes: Vec<Route> = dashboard_routes()
        .into_iter()
        .filter(|r| !r.placeholders().is_empty())
        // Public: the embedded assets and the language switcher hold no organization's data.
        .filter(|r| !r.path.starts_with("/assets/") && !r.path.starts_with("/lang/"))
        .collect();
    assert!(!routes.is_empty(), "no dashboard route takes an id");

    // Outsiders of organization A, signed in through the pages: the owner of another
    // organization and a member of it.
    let outsider = Browser::new(app);
    outsider.sign_in("owner@b.example").await;
    let outsider_member = Browser::new(app);
    outsider_member.sign_in("member@b.example").await;
    let anonymous = Browser::new(app);
    let csrf_of = |html: &str| field(html, "csrf");
    let outsider_csrf = csrf_of(&outsider.page("/keys").await);
    let member_csrf = csrf_of(&outsider_member.page("/keys").await);
    let anonymous_csrf = csrf_of(&anonymous.page("/login").await);

    let mut attempts = 0;
    for route in &routes {
        let api = as_api_route(route);
        let ids: BTreeMap<String, String> = w.fixtures(&api, &w.org).await;
        let path = api.fill(&ids).strip_prefix("/api/v1").unwrap().to_owned();
        let before = digest(w.store()).await;
        for (who, browser, csrf) in [
            ("owner of another org", &outsider, &outsider_csrf),
            ("member of another org", &outsider_member, &member_csrf),
        ] {
            for org in [w.org.as_str(), ""] {
                let r = if route.is_write() {
                    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf), ("org", org)];
                    form.extend_from_slice(FORM_FIELDS);
                    browser.post(&path, &form).await
                } else {
                    browser.get(&format!("{path}?org={org}")).await
                };
                attempts += 1;
                // In their own organization a Member may be refused for their role before
                // the id is looked at (403, which says nothing about the id); everyone else
                // must get the 404 page.
                let role_refusal = who.starts_with("member") && org.is_empty();
                assert!(
                    r.status() == StatusCode::NOT_FOUND
                        || (role_refusal && r.status() == StatusCode::FORBIDDEN),
                    "{route} as the {who} (org={org:?}) must be the 404 page, got {}",
                    r.status()
                );
            }
        }
        let r = if route.is_write() {
            anonymous
                .post(
                    &path,
                    &[("csrf", anonymous_csrf.as_str()), ("org", w.org.as_str())],
                )
                .await
        } else {
            anonymous.get(&path).await
        };
        attempts += 1;
        assert!(
            matches!(r.status(), StatusCode::SEE_OTHER | StatusCode::FORBIDDEN),
            "{route} signed out: {}",
            r.status()
        );
        if r.status() == StatusCode::SEE_OTHER {
            assert!(location(&r).starts_with("/login"), "{route} signed out");
        }
        assert_eq!(
            digest(w.store()).await,
            before,
            "{route}: a refused call changed the database"
        );
    }
    println!(
        "dashboard walk: {} id routes, {attempts} refused attempts",
        routes.len()
    );
}
