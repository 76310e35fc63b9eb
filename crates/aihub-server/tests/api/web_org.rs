//! The organization pages over HTTP: settings (create, rename, transfer, leave, delete by
//! name), members and roles, teams and their members, invitations (send, resend, revoke), each
//! form's effect read back through the JSON API; and what Admins, Members and Viewers may not
//! do, refused with nothing changed.

use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::Value;

use crate::access::World;
use crate::helpers::{TestApp, api_tests};
use crate::surface::digest;
use crate::web_client::{Browser, field, location, text_of};

api_tests!(
    an_owner_runs_the_organization_from_the_pages,
    members_and_viewers_see_no_controls_and_change_nothing,
    admins_cannot_touch_owners_and_the_last_owner_stays,
);

async fn json(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.get(path, token).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

/// Posts a form of the organization pages and returns where it sent the browser.
async fn submit(b: &Browser, path: &str, fields: &[(&str, &str)]) -> String {
    let html = b.page("/org").await;
    let csrf = field(&html, "csrf");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let r = b.post(path, &form).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "POST {path}: {}",
        r.text().await.unwrap()
    );
    location(&r)
}

async fn an_owner_runs_the_organization_from_the_pages(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let owner = Browser::new(app);
    owner.sign_in("owner@a.example").await;
    let token = &w.owner.token;

    // Create another organization from the settings page: it opens, with the viewer as Owner.
    let to = submit(
        &owner,
        "/org/create",
        &[("org", &w.org), ("name", "Second <script>")],
    )
    .await;
    assert!(to.ends_with("&done=created"), "{to}");
    let html = owner.page(&to).await;
    assert_eq!(text_of(&html, "org-role"), "Owner");
    assert!(html.contains("Second &#60;script&#62;"), "escaped name");
    assert!(!html.contains("Second <script>"));
    let second = to
        .split("org=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();

    // Rename it; an empty name is refused with a message and changes nothing.
    submit(
        &owner,
        "/org/rename",
        &[("org", &second), ("name", "Second")],
    )
    .await;
    let org = json(app, token, &format!("/api/v1/orgs/{second}")).await;
    assert_eq!(org["name"], "Second");
    let to = submit(&owner, "/org/rename", &[("org", &second), ("name", "  ")]).await;
    assert!(to.contains("error="), "{to}");
    let html = owner.page(&to).await;
    assert!(html.contains("id=\"error\""));
    let org = json(app, token, &format!("/api/v1/orgs/{second}")).await;
    assert_eq!(org["name"], "Second");

    // Invite the world's member as an Admin: the e-mail goes out and the page says so.
    let to = submit(
        &owner,
        "/org/invitations",
        &[
            ("org", &second),
            ("email", "member@a.example"),
            ("role", "admin"),
        ],
    )
    .await;
    assert!(to.ends_with("done=invited"), "{to}");
    let html = owner.page(&to).await;
    assert!(html.contains("member@a.example") && html.contains("id=\"notice\""));
    let list = json(app, token, &format!("/api/v1/orgs/{second}/invitations")).await;
    let invitation = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["data"][0]["role"], "admin");
    assert!(html.contains(&format!("id=\"invitation-{invitation}\"")));

    // Resend gives a new token; revoke ends it.
    submit(
        &owner,
        &format!("/org/invitations/{invitation}/resend"),
        &[("org", &second)],
    )
    .await;
    submit(
        &owner,
        &format!("/org/invitations/{invitation}/revoke"),
        &[("org", &second)],
    )
    .await;
    let list = json(app, token, &format!("/api/v1/orgs/{second}/invitations")).await;
    assert_eq!(list["data"][0]["status"], "revoked");
    assert!(
        w.smtp
            .wait_for(2, std::time::Duration::from_secs(10))
            .await
            .is_some()
    );

    // Members: the world's member joins (as the store would after accepting), then the owner
    // changes their role and model list from the members page.
    let member = w.member.user_id.clone();
    w.add_member(&second, &member, aihub_core::Role::Viewer)
        .await;
    let html = owner.page(&format!("/org/members?org={second}")).await;
    assert!(html.contains(&format!("id=\"member-form-{member}\"")));
    submit(
        &owner,
        &format!("/org/members/{member}"),
        &[
            ("org", &second),
            ("role", "admin"),
            ("models", "mock-chat, gpt-4o"),
        ],
    )
    .await;
    let m = json(
        app,
        token,
        &format!("/api/v1/orgs/{second}/members/{member}"),
    )
    .await;
    assert_eq!(m["role"], "admin");
    assert_eq!(m["models"], serde_json::json!(["mock-chat", "gpt-4o"]));
    let to = submit(
        &owner,
        &format!("/org/members/{member}"),
        &[("org", &second), ("role", "emperor")],
    )
    .await;
    assert!(to.contains("error=invalid_role"), "{to}");

    // Teams: create (lands on the team's page), add the member, remove them, delete the team.
    let to = submit(&owner, "/org/teams", &[("org", &second), ("name", "Red")]).await;
    let team = to
        .strip_prefix("/org/teams/")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    submit(
        &owner,
        &format!("/org/teams/{team}/members"),
        &[("org", &second), ("user_id", &member)],
    )
    .await;
    let html = owner.page(&format!("/org/teams/{team}?org={second}")).await;
    assert!(html.contains(&format!("id=\"team-member-{member}\"")));
    // Switching organization from a team's page goes to the other org's settings, not to a
    // team that is not there.
    assert!(html.contains("action=\"/org\" class=\"org-switcher\""));
    submit(
        &owner,
        &format!("/org/teams/{team}"),
        &[("org", &second), ("name", "Blue")],
    )
    .await;
    let t = json(app, token, &format!("/api/v1/orgs/{second}/teams/{team}")).await;
    assert_eq!(t["name"], "Blue");
    submit(
        &owner,
        &format!("/org/teams/{team}/members/{member}/remove"),
        &[("org", &second)],
    )
    .await;
    let tm = json(
        app,
        token,
        &format!("/api/v1/orgs/{second}/teams/{team}/members"),
    )
    .await;
    assert!(tm["data"].as_array().unwrap().is_empty());
    let html = owner
        .page(&format!("/org/teams/{team}/delete?org={second}"))
        .await;
    assert!(html.contains("id=\"delete-team-form\""));
    submit(
        &owner,
        &format!("/org/teams/{team}/delete"),
        &[("org", &second)],
    )
    .await;
    let r = app
        .get(&format!("/api/v1/orgs/{second}/teams/{team}"), token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Remove the member after the confirmation page.
    let html = owner
        .page(&format!("/org/members/{member}/remove?org={second}"))
        .await;
    assert!(html.contains("id=\"remove-member-form\""));
    submit(
        &owner,
        &format!("/org/members/{member}/remove"),
        &[("org", &second)],
    )
    .await;
    let r = app
        .get(&format!("/api/v1/orgs/{second}/members/{member}"), token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Transfer to the world's admin: they become Owner, the viewer becomes Admin.
    let heir = w.admin.user_id.clone();
    w.add_member(&second, &heir, aihub_core::Role::Member).await;
    submit(
        &owner,
        "/org/transfer",
        &[("org", &second), ("user_id", &heir)],
    )
    .await;
    let m = json(app, token, &format!("/api/v1/orgs/{second}/members/{heir}")).await;
    assert_eq!(m["role"], "owner");
    let html = owner.page(&format!("/org?org={second}")).await;
    assert_eq!(text_of(&html, "org-role"), "Admin");
    assert!(
        !html.contains("id=\"delete-org-form\""),
        "an Admin cannot delete"
    );

    // The new Owner deletes it: a wrong name changes nothing, the exact name deletes.
    let heir_browser = Browser::new(app);
    heir_browser.sign_in("admin@a.example").await;
    let to = submit(
        &heir_browser,
        "/org/delete",
        &[("org", &second), ("confirm", "second")],
    )
    .await;
    assert!(to.contains("error=confirmation_mismatch"), "{to}");
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{second}"), token)
            .await
            .status(),
        StatusCode::OK
    );
    let to = submit(
        &heir_browser,
        "/org/delete",
        &[("org", &second), ("confirm", "Second")],
    )
    .await;
    assert_eq!(to, "/");
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{second}"), token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // A personal organization offers neither leaving nor deleting, and refuses both.
    let html = owner.page("/org").await;
    assert!(html.contains("id=\"org-personal\""));
    assert!(!html.contains("id=\"leave-org-form\"") && !html.contains("id=\"delete-org-form\""));

    // Every organization page speaks Chinese.
    let zh = Browser::new(app);
    zh.sign_in("owner@a.example").await;
    zh.get("/lang/zh-CN?next=/").await;
    for page in ["/org", "/org/members", "/org/teams", "/org/invitations"] {
        let html = zh.page(&format!("{page}?org={}", w.org)).await;
        assert!(html.contains("<html lang=\"zh-CN\">"), "{page}");
        assert!(html.contains("组织"), "{page} in Chinese");
    }
}

async fn members_and_viewers_see_no_controls_and_change_nothing(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let team = w
        .create(
            &format!("/api/v1/orgs/{}/teams", w.org),
            &w.owner.token,
            serde_json::json!({"name": "Ops"}),
        )
        .await;
    for email in ["viewer@a.example", "member@a.example"] {
        let b = Browser::new(app);
        b.sign_in(email).await;
        let q = format!("?org={}", w.org);
        let settings = b.page(&format!("/org{q}")).await;
        for id in ["rename-org-form", "transfer-org-form", "delete-org-form"] {
            assert!(!settings.contains(id), "{email} sees {id}");
        }
        assert!(settings.contains("leave-org-form"), "anyone may leave");
        let members = b.page(&format!("/org/members{q}")).await;
        assert!(
            !members.contains("member-form-"),
            "{email} can edit members"
        );
        let teams = b.page(&format!("/org/teams{q}")).await;
        assert!(!teams.contains("create-team-form"));
        assert!(!settings.contains("org-nav-invitations"));
        let r = b.get(&format!("/org/invitations{q}")).await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "invitations are for managers"
        );

        // Forged posts: refused (403), nothing changes.
        let csrf = field(&settings, "csrf");
        let before = digest(w.store()).await;
        let owner = w.owner.user_id.clone();
        let forged: Vec<(String, Vec<(&str, &str)>)> = vec![
            ("/org/rename".into(), vec![("name", "Taken")]),
            ("/org/transfer".into(), vec![("user_id", &owner)]),
            ("/org/delete".into(), vec![("confirm", "Org A")]),
            (
                format!("/org/members/{owner}"),
                vec![("role", "viewer"), ("models", "")],
            ),
            (format!("/org/members/{owner}/remove"), vec![]),
            ("/org/teams".into(), vec![("name", "Mine")]),
            (format!("/org/teams/{team}"), vec![("name", "Mine")]),
            (format!("/org/teams/{team}/delete"), vec![]),
            (
                "/org/invitations".into(),
                vec![("email", "x@c.example"), ("role", "admin")],
            ),
        ];
        for (path, fields) in &forged {
            let mut form = vec![("csrf", csrf.as_str()), ("org", w.org.as_str())];
            form.extend_from_slice(fields);
            let r = b.post(path, &form).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{email} POST {path}");
        }
        assert_eq!(digest(w.store()).await, before, "{email} changed something");
    }
}

async fn admins_cannot_touch_owners_and_the_last_owner_stays(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let admin = Browser::new(app);
    admin.sign_in("admin@a.example").await;
    let owner = w.owner.user_id.clone();
    let html = admin.page(&format!("/org/members?org={}", w.org)).await;
    assert!(
        !html.contains(&format!("member-form-{owner}")),
        "no controls on the Owner"
    );
    assert!(html.contains(&format!("member-form-{}", w.member.user_id)));
    assert!(
        !html.contains("<option value=\"owner\""),
        "an Admin cannot make Owners"
    );
    let csrf = field(&html, "csrf");
    let before = digest(w.store()).await;
    for (path, fields) in [
        (
            format!("/org/members/{owner}"),
            vec![("role", "admin"), ("models", "")],
        ),
        (format!("/org/members/{owner}/remove"), vec![]),
        (
            format!("/org/members/{}", w.member.user_id),
            vec![("role", "owner"), ("models", "")],
        ),
    ] {
        let mut form = vec![("csrf", csrf.as_str()), ("org", w.org.as_str())];
        form.extend_from_slice(&fields);
        let r = admin.post(&path, &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {path}");
    }
    assert_eq!(digest(w.store()).await, before);

    // The only Owner cannot leave: the page says why and nothing changes.
    let owner_b = Browser::new(app);
    owner_b.sign_in("owner@a.example").await;
    let html = owner_b.page(&format!("/org?org={}", w.org)).await;
    let csrf = field(&html, "csrf");
    let before = digest(w.store()).await;
    let r = owner_b
        .post("/org/leave", &[("csrf", &csrf), ("org", &w.org)])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("id=\"error-code\""));
    assert_eq!(digest(w.store()).await, before);

    // A wrong token changes nothing either.
    let r = owner_b
        .post(
            "/org/rename",
            &[("csrf", "forged"), ("org", &w.org), ("name", "Hijacked")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(digest(w.store()).await, before);
}
