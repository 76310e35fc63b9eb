//! Invitations by e-mail, end to end through the SMTP sink: sending, the invitee's list,
//! accepting and declining with the token from the e-mail, revoking, resending (the old token
//! dies), expiry, who may invite whom, and that no token ever appears in a response or a log.

use std::time::Duration;

use aihub_core::config::{Config, SmtpSecurity};
use aihub_mock_upstream::smtp::{ReceivedMail, SmtpSink};
use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, api_tests, captured_logs, error_code, spawn_app, spawn_app_with};
use crate::members::{audited, crew};

api_tests!(
    an_invitation_is_mailed_and_accepted,
    who_may_invite_whom,
    invitations_are_revoked_resent_and_declined,
    expired_invitations_cannot_be_used,
    without_smtp_invitations_are_not_mailed,
);

pub async fn app_with_sink(
    kind: BackendKind,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await.unwrap();
    let port = sink.port();
    let app = spawn_app_with(kind, move |c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = port;
        c.smtp.security = SmtpSecurity::None;
        c.server.public_url = Some("https://hub.example.com/".into());
        tweak(c);
    })
    .await;
    (app, sink)
}

/// The `n`-th e-mail the sink received (1-based), waiting for it.
pub async fn mail(sink: &SmtpSink, n: usize) -> ReceivedMail {
    let all = sink
        .wait_for(n, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no e-mail number {n}"));
    all[n - 1].clone()
}

/// The invitation token in an e-mail's accept link (undoing quoted-printable if used).
pub fn token_in(mail: &ReceivedMail) -> String {
    let text = mail.data.replace("=\r\n", "").replace("=3D", "=");
    let link = "https://hub.example.com/invitations/accept?token=";
    let at = text
        .find(link)
        .unwrap_or_else(|| panic!("no link in {text}"))
        + link.len();
    let token: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    assert!(
        token.starts_with("aihub-inv-") && token.len() == 10 + 43,
        "{token}"
    );
    token
}

async fn invite(
    app: &TestApp,
    org: &str,
    token: &str,
    email: &str,
    role: &str,
) -> reqwest::Response {
    app.post(
        &format!("/api/v1/orgs/{org}/invitations"),
        token,
        json!({"email": email, "role": role}),
    )
    .await
}

async fn an_invitation_is_mailed_and_accepted(kind: BackendKind) {
    let (app, sink) = app_with_sink(kind, |_| {}).await;
    let c = crew(&app).await;
    let bob = app.signup("bob@example.com").await;

    let r = invite(&app, &c.org, &c.admin.token, "  Bob@Example.com ", "admin").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sent_text = r.text().await.unwrap();
    let sent: Value = serde_json::from_str(&sent_text).unwrap();
    assert_eq!(sent["email"], "bob@example.com");
    assert_eq!(sent["role"], "admin");
    assert_eq!(sent["status"], "pending");
    assert_eq!(sent["email_sent"], true);
    assert_eq!(sent["org_id"], c.org.as_str());
    assert_eq!(sent["org_name"], "Acme");
    assert_eq!(sent["invited_by"], c.admin.user_id.as_str());
    assert!(sent.get("token").is_none());
    let id = sent["id"].as_str().unwrap().to_owned();
    let expires = chrono::DateTime::parse_from_rfc3339(sent["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((71.9..=72.0).contains(&hours), "default 72 h, got {hours}");

    // The e-mail: to Bob, with a link to this server carrying the token.
    let m = mail(&sink, 1).await;
    assert_eq!(m.to, vec!["bob@example.com".to_owned()]);
    let subject = m.header("Subject").unwrap();
    assert!(subject.contains("Acme"), "{subject}");
    let token = token_in(&m);
    assert!(!sent_text.contains(&token));

    // The organization sees it; Bob sees it in his own list, without a token.
    let list: Value = app
        .get(
            &format!("/api/v1/orgs/{}/invitations", c.org),
            &c.owner.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let r = app.get("/api/v1/invitations", &bob.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mine_text = r.text().await.unwrap();
    assert!(!mine_text.contains(&token));
    let mine: Value = serde_json::from_str(&mine_text).unwrap();
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    assert_eq!(mine["data"][0]["id"], id.as_str());
    assert_eq!(mine["data"][0]["org_name"], "Acme");
    // Nobody else sees it.
    let mine: Value = app
        .get("/api/v1/invitations", &c.member.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine["data"].as_array().unwrap().is_empty());

    // Someone else holding Bob's token cannot use it; nor can anyone use a made-up one.
    let carol = app.signup("carol@example.com").await;
    for t in [
        token.clone(),
        format!("aihub-inv-{}", "A".repeat(43)),
        "junk".into(),
    ] {
        for verb in ["accept", "decline"] {
            let r = app
                .post(
                    &format!("/api/v1/invitations/{verb}"),
                    &carol.token,
                    json!({"token": t}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{verb} {t}");
        }
    }
    let r = app
        .post(
            "/api/v1/invitations/accept",
            &bob.token,
            json!({"token": token, "x": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{}", c.org), &bob.token)
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "not a member before accepting"
    );

    let r = app
        .post(
            "/api/v1/invitations/accept",
            &bob.token,
            json!({"token": token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(accepted["invitation"]["status"], "accepted");
    assert_eq!(accepted["org"]["id"], c.org.as_str());
    assert_eq!(accepted["org"]["role"], "admin");
    let org: Value = app
        .get(&format!("/api/v1/orgs/{}", c.org), &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(org["role"], "admin");
    let member: Value = app
        .get(
            &format!("/api/v1/orgs/{}/members/{}", c.org, bob.user_id),
            &c.viewer.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(member["role"], "admin");

    // Used: 410 for accept and decline, and gone from Bob's list.
    for verb in ["accept", "decline"] {
        let r = app
            .post(
                &format!("/api/v1/invitations/{verb}"),
                &bob.token,
                json!({"token": token}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::GONE);
        assert_eq!(error_code(r).await, "invitation_used");
    }
    let mine: Value = app
        .get("/api/v1/invitations", &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine["data"].as_array().unwrap().is_empty());
    let list: Value = app
        .get(
            &format!("/api/v1/orgs/{}/invitations", c.org),
            &c.admin.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["status"], "accepted");
    assert!(list["data"][0]["closed_at"].is_string());
    // Bob is a member now: inviting him again is a conflict.
    let r = invite(&app, &c.org, &c.owner.token, "bob@example.com", "member").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "already_member");

    assert!(
        !captured_logs().contains(&token),
        "the token is never logged"
    );
    assert_eq!(
        audited(&app, &c.org).await,
        ["org.create", "invitation.create", "invitation.accept"]
    );
}

async fn who_may_invite_whom(kind: BackendKind) {
    let (app, sink) = app_with_sink(kind, |_| {}).await;
    let c = crew(&app).await;
    let base = format!("/api/v1/orgs/{}/invitations", c.org);

    // Admins invite admins, members and viewers; only Owners invite Owners.
    for role in ["admin", "member", "viewer"] {
        let r = invite(
            &app,
            &c.org,
            &c.admin.token,
            &format!("{role}-new@example.com"),
            role,
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{role}");
    }
    let r = invite(&app, &c.org, &c.admin.token, "boss@example.com", "owner").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = invite(&app, &c.org, &c.owner.token, "boss@example.com", "owner").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let boss_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // …and only Owners resend or revoke an Owner's invitation.
    let r = app
        .post(
            &format!("{base}/{boss_id}/resend"),
            &c.admin.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .delete(&format!("{base}/{boss_id}"), &c.admin.token)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Members and Viewers neither invite nor see invitations.
    for who in [&c.member, &c.viewer] {
        let r = invite(&app, &c.org, &who.token, "friend@example.com", "viewer").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            app.get(&base, &who.token).await.status(),
            StatusCode::FORBIDDEN
        );
        let r = app
            .post(&format!("{base}/{boss_id}/resend"), &who.token, json!({}))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = app.delete(&format!("{base}/{boss_id}"), &who.token).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // Outsiders see nothing; another organization's invitation is not found here.
    let outsider = app.signup("outsider@example.com").await;
    assert_eq!(
        app.get(&base, &outsider.token).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = invite(
        &app,
        &outsider.org_id,
        &outsider.token,
        "pal@example.com",
        "member",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let foreign = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .delete(&format!("{base}/{foreign}"), &c.owner.token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .post(
            &format!("{base}/{foreign}/resend"),
            &c.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Validation and conflicts.
    let r = invite(&app, &c.org, &c.owner.token, "not-an-address", "member").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_email");
    let r = invite(&app, &c.org, &c.owner.token, "x@example.com", "root").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    let r = app
        .post(&base, &c.owner.token, json!({"email": "x@example.com"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            &base,
            &c.owner.token,
            json!({"email": "x@example.com", "role": "member", "token": "mine"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    let r = invite(&app, &c.org, &c.owner.token, "member@example.com", "admin").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "already_member");
    let r = invite(
        &app,
        &c.org,
        &c.owner.token,
        "MEMBER-new@example.com",
        "viewer",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "invitation_exists");

    // Pages, newest first.
    let page: Value = app
        .get(&format!("{base}?limit=3"), &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"][0]["id"], boss_id.as_str());
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("{base}?limit=3&cursor={cursor}"), &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    assert_eq!(
        sink.wait_for(5, Duration::from_secs(10))
            .await
            .unwrap()
            .len(),
        5
    );
}

async fn invitations_are_revoked_resent_and_declined(kind: BackendKind) {
    let (app, sink) = app_with_sink(kind, |_| {}).await;
    let c = crew(&app).await;
    let base = format!("/api/v1/orgs/{}/invitations", c.org);
    let dan = app.signup("dan@example.com").await;
    let accept = |token: String| {
        let app = &app;
        let bearer = dan.token.clone();
        async move {
            app.post(
                "/api/v1/invitations/accept",
                &bearer,
                json!({"token": token}),
            )
            .await
        }
    };

    // Revoked: the link is dead (410), revoking again is a conflict.
    let r = invite(&app, &c.org, &c.admin.token, "dan@example.com", "member").await;
    let first = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t1 = token_in(&mail(&sink, 1).await);
    let r = app.delete(&format!("{base}/{first}"), &c.admin.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "revoked");
    let r = accept(t1.clone()).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(error_code(r).await, "invitation_revoked");
    let r = app.delete(&format!("{base}/{first}"), &c.admin.token).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "invitation_closed");
    let r = app
        .post(&format!("{base}/{first}/resend"), &c.admin.token, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "invitation_closed");

    // A new invitation, resent: a new e-mail with a new token; the old token is dead.
    let r = invite(&app, &c.org, &c.admin.token, "dan@example.com", "viewer").await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the revoked one no longer blocks"
    );
    let second: Value = r.json().await.unwrap();
    let second_id = second["id"].as_str().unwrap().to_owned();
    let t2 = token_in(&mail(&sink, 2).await);
    let r = app
        .post(
            &format!("{base}/{second_id}/resend"),
            &c.admin.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let resent: Value = r.json().await.unwrap();
    assert_eq!(resent["email_sent"], true);
    assert_eq!(resent["id"], second_id.as_str());
    assert!(resent["expires_at"].as_str().unwrap() >= second["expires_at"].as_str().unwrap());
    let t3 = token_in(&mail(&sink, 3).await);
    assert_ne!(t2, t3);
    let r = accept(t2.clone()).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the old token matches nothing"
    );

    // Declined: not a member, and the token is used up.
    let r = app
        .post(
            "/api/v1/invitations/decline",
            &dan.token,
            json!({"token": t3}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "declined");
    let r = accept(t3.clone()).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(error_code(r).await, "invitation_used");
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{}", c.org), &dan.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // An invitation into an organization that is then deleted cannot be accepted.
    let r = invite(&app, &c.org, &c.owner.token, "dan@example.com", "member").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t4 = token_in(&mail(&sink, 4).await);
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/orgs/{}", c.org),
            Some(&c.owner.token),
        )
        .json(&json!({"confirm": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mine: Value = app
        .get("/api/v1/invitations", &dan.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine["data"].as_array().unwrap().is_empty());
    assert_eq!(accept(t4).await.status(), StatusCode::NOT_FOUND);

    for t in [&t1, &t2, &t3] {
        assert!(!captured_logs().contains(t.as_str()));
    }
    assert_eq!(
        audited(&app, &c.org).await,
        [
            "org.create",
            "invitation.create",
            "invitation.revoke",
            "invitation.create",
            "invitation.resend",
            "invitation.decline",
            "invitation.create",
            "org.delete"
        ]
    );
}

async fn expired_invitations_cannot_be_used(kind: BackendKind) {
    // A lifetime of zero: every invitation is expired as soon as it is sent.
    let (app, sink) = app_with_sink(kind, |c| c.auth.invitation_ttl_hours = 0).await;
    let c = crew(&app).await;
    let eve = app.signup("eve@example.com").await;
    let r = invite(&app, &c.org, &c.owner.token, "eve@example.com", "member").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(sent["status"], "expired");
    let id = sent["id"].as_str().unwrap().to_owned();
    let token = token_in(&mail(&sink, 1).await);

    let mine: Value = app
        .get("/api/v1/invitations", &eve.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine["data"].as_array().unwrap().is_empty());
    for verb in ["accept", "decline"] {
        let r = app
            .post(
                &format!("/api/v1/invitations/{verb}"),
                &eve.token,
                json!({"token": token}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::GONE);
        assert_eq!(error_code(r).await, "invitation_expired");
    }
    let list: Value = app
        .get(
            &format!("/api/v1/orgs/{}/invitations", c.org),
            &c.owner.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["status"], "expired");
    // Still open: it blocks a second invitation, and can be resent or revoked.
    let r = invite(&app, &c.org, &c.owner.token, "eve@example.com", "member").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/invitations/{id}/resend", c.org),
            &c.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .delete(
            &format!("/api/v1/orgs/{}/invitations/{id}", c.org),
            &c.owner.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn without_smtp_invitations_are_not_mailed(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let r = invite(&app, &c.org, &c.owner.token, "frank@example.com", "viewer").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(sent["email_sent"], false);
    assert_eq!(sent["status"], "pending");
    let id = sent["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/invitations/{id}/resend", c.org),
            &c.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["email_sent"], false);
    // The invitee still sees it in their list once they have an account.
    let frank = app.signup("frank@example.com").await;
    let mine: Value = app
        .get("/api/v1/invitations", &frank.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["data"][0]["id"], id);
}
