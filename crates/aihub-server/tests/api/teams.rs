//! Teams: create, list, rename, delete (revoking the team's keys at once), and their members,
//! who must be members of the organization.

use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{api_tests, error_code, spawn_app};
use crate::members::{audited, chat_status, crew, key_in};

api_tests!(
    teams_are_created_listed_and_renamed,
    team_members_come_from_the_organization,
    deleting_a_team_revokes_its_keys_at_once,
);

async fn teams_are_created_listed_and_renamed(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let base = format!("/api/v1/orgs/{}/teams", c.org);

    let r = app
        .post(&base, &c.admin.token, json!({"name": " Platform "}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let platform: Value = r.json().await.unwrap();
    assert_eq!(platform["name"], "Platform");
    assert_eq!(platform["org_id"], c.org.as_str());
    assert_eq!(platform["member_count"], 0);
    let platform_id = platform["id"].as_str().unwrap().to_owned();
    let r = app
        .post(&base, &c.owner.token, json!({"name": "Data"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let data_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Names are unique per organization, and validated.
    let r = app
        .post(&base, &c.owner.token, json!({"name": "Platform"}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "team_exists");
    for bad in [json!({"name": ""}), json!({"name": "x".repeat(101)})] {
        let r = app.post(&base, &c.owner.token, bad).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(r).await, "invalid_name");
    }
    let r = app
        .post(&base, &c.owner.token, json!({"name": "x", "budget": 1}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    // Another organization may use the same name.
    let outsider = app.signup("outsider@example.com").await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/teams", outsider.org_id),
            &outsider.token,
            json!({"name": "Platform"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let foreign_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Members and Viewers read but do not manage.
    for who in [&c.member, &c.viewer] {
        let r = app.get(&base, &who.token).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.post(&base, &who.token, json!({"name": "Mine"})).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = app
            .patch(
                &format!("{base}/{platform_id}"),
                &who.token,
                json!({"name": "Mine"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = app
            .delete(&format!("{base}/{platform_id}"), &who.token)
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    // Newest first, in pages.
    let list: Value = app
        .get(&format!("{base}?limit=1"), &c.viewer.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], data_id.as_str());
    let cursor = list["next_cursor"].as_str().unwrap();
    let list: Value = app
        .get(&format!("{base}?limit=1&cursor={cursor}"), &c.viewer.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], platform_id.as_str());
    assert!(list["next_cursor"].is_null());

    // Rename; a taken name is refused; renaming to its own name is fine.
    let r = app
        .patch(
            &format!("{base}/{platform_id}"),
            &c.admin.token,
            json!({"name": "Infra"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Infra");
    let r = app
        .patch(
            &format!("{base}/{platform_id}"),
            &c.admin.token,
            json!({"name": "Data"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "team_exists");
    let r = app
        .get(&format!("{base}/{platform_id}"), &c.member.token)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Infra");

    // Another organization's team, an unknown id, an outsider: 404.
    for (path, token) in [
        (format!("{base}/{foreign_id}"), &c.owner.token),
        (format!("{base}/{}", uuid::Uuid::now_v7()), &c.owner.token),
        (format!("{base}/{platform_id}"), &outsider.token),
    ] {
        assert_eq!(app.get(&path, token).await.status(), StatusCode::NOT_FOUND);
        let r = app.patch(&path, token, json!({"name": "Hijack"})).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            app.delete(&path, token).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        audited(&app, &c.org).await,
        ["org.create", "team.create", "team.create", "team.update"]
    );
}

async fn team_members_come_from_the_organization(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let team: Value = app
        .post(
            &format!("/api/v1/orgs/{}/teams", c.org),
            &c.owner.token,
            json!({"name": "Core"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let team_path = format!(
        "/api/v1/orgs/{}/teams/{}",
        c.org,
        team["id"].as_str().unwrap()
    );
    let members = format!("{team_path}/members");

    for who in [&c.member, &c.viewer] {
        let r = app
            .post(&members, &c.admin.token, json!({"user_id": who.user_id}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let added: Value = r.json().await.unwrap();
        assert_eq!(added["user_id"], who.user_id.as_str());
        assert!(added["email"].is_string());
        assert!(added["role"].is_string());
    }
    // Twice: conflict. A non-member, an unknown user, a bad id: refused.
    let r = app
        .post(
            &members,
            &c.owner.token,
            json!({"user_id": c.member.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "already_in_team");
    let outsider = app.signup("outsider@example.com").await;
    for id in [outsider.user_id.clone(), uuid::Uuid::now_v7().to_string()] {
        let r = app
            .post(&members, &c.owner.token, json!({"user_id": id}))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(r).await, "not_a_member");
    }
    let r = app
        .post(&members, &c.owner.token, json!({"user_id": "nope"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    // Members and Viewers cannot change the team, themselves included.
    let r = app
        .post(
            &members,
            &c.member.token,
            json!({"user_id": c.admin.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .delete(&format!("{members}/{}", c.member.user_id), &c.viewer.token)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Outsiders see nothing.
    assert_eq!(
        app.get(&members, &outsider.token).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            &members,
            &outsider.token,
            json!({"user_id": outsider.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Every role reads, in the order they were added.
    let list: Value = app
        .get(&members, &c.viewer.token)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c.member.user_id.as_str(), c.viewer.user_id.as_str()]);
    let team_now: Value = app
        .get(&team_path, &c.member.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(team_now["member_count"], 2);

    // Remove one; removing again is 404.
    let r = app
        .delete(&format!("{members}/{}", c.viewer.user_id), &c.admin.token)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .delete(&format!("{members}/{}", c.viewer.user_id), &c.admin.token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = app
        .get(&members, &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // A team of another organization cannot be reached through this one.
    let foreign: Value = app
        .post(
            &format!("/api/v1/orgs/{}/teams", outsider.org_id),
            &outsider.token,
            json!({"name": "Theirs"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .post(
            &format!(
                "/api/v1/orgs/{}/teams/{}/members",
                c.org,
                foreign["id"].as_str().unwrap()
            ),
            &c.owner.token,
            json!({"user_id": c.member.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        audited(&app, &c.org).await,
        [
            "org.create",
            "team.create",
            "team.member_add",
            "team.member_add",
            "team.member_remove"
        ]
    );
}

async fn deleting_a_team_revokes_its_keys_at_once(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let teams = format!("/api/v1/orgs/{}/teams", c.org);
    let team: Value = app
        .post(&teams, &c.owner.token, json!({"name": "Doomed"}))
        .await
        .json()
        .await
        .unwrap();
    let team_id = team["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("{teams}/{team_id}/members"),
            &c.owner.token,
            json!({"user_id": c.member.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (team_key_id, team_key) = key_in(
        &app,
        &c.member,
        &c.org,
        json!({"name": "team", "team_id": team_id}),
    )
    .await;
    let (_, own_key) = key_in(&app, &c.member, &c.org, json!({"name": "own"})).await;
    assert_eq!(
        chat_status(&app, &team_key).await,
        StatusCode::OK,
        "cache warm"
    );
    assert_eq!(chat_status(&app, &own_key).await, StatusCode::OK);

    let r = app
        .delete(&format!("{teams}/{team_id}"), &c.admin.token)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .v1("/v1/chat/completions", &team_key, crate::members::chat())
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "This API key has been revoked.");
    assert_eq!(
        chat_status(&app, &own_key).await,
        StatusCode::OK,
        "not a team key"
    );
    let key: Value = app
        .get(
            &format!("/api/v1/orgs/{}/keys/{team_key_id}", c.org),
            &c.owner.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(key["revoked"], true);
    assert_eq!(
        app.get(&format!("{teams}/{team_id}"), &c.owner.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // The name is free again.
    let r = app
        .post(&teams, &c.owner.token, json!({"name": "Doomed"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let actions = audited(&app, &c.org).await;
    assert_eq!(
        actions,
        [
            "org.create",
            "team.create",
            "team.member_add",
            "team.delete",
            "team.create"
        ]
    );
}
