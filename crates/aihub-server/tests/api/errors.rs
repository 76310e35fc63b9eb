//! The HTTP edge: request ids, security headers, error shapes for bad routes and bodies, health.

use std::collections::HashSet;

use aihub_store::BackendKind;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{api_tests, error_code, spawn_app, spawn_app_with};

api_tests!(
    every_response_carries_request_id_and_security_headers,
    hsts_follows_a_trusted_proxy_on_every_path,
    bad_routes_and_bodies,
    health_probes
);

async fn every_response_carries_request_id_and_security_headers(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("h@example.com").await;
    let big = "x".repeat(2 * 1024 * 1024);
    let requests = vec![
        app.client.get(app.url("/healthz")),
        app.client.get(app.url("/readyz")),
        app.client.get(app.url("/nope")),
        app.client.delete(app.url("/healthz")),
        app.client.get(app.url("/api/v1/me")),
        app.client
            .get(app.url("/api/v1/me"))
            .bearer_auth(&who.token),
        app.client.get(app.url("/v1/models")),
        // On a client of its own: the server answers 413 without reading the whole body and
        // closes the connection, which a later request reusing it from the pool would see as
        // a reset.
        reqwest::Client::new()
            .post(app.url("/api/v1/auth/login"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(big),
    ];
    let mut ids = HashSet::new();
    for req in requests {
        let r = req.send().await.unwrap();
        let h = r.headers();
        let id = h
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .unwrap();
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert!(ids.insert(id.to_owned()), "request ids are unique");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            h.get(header::STRICT_TRANSPORT_SECURITY).is_none(),
            "no HSTS over plain HTTP"
        );
    }
    // A client-supplied request id is not trusted.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-chosen")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "client-chosen");
}

/// `Strict-Transport-Security` goes on responses to requests a trusted proxy says came over
/// HTTPS, whichever way the server handles them: through the router (`/healthz`, `/v1/models`)
/// or straight to the proxy handler (`POST /v1/chat/completions`, which has the peer address
/// handed to it rather than in the request's extensions). From any other peer the header is
/// the client's own claim and is ignored.
async fn hsts_follows_a_trusted_proxy_on_every_path(kind: BackendKind) {
    let trusting = spawn_app_with(kind, |c| {
        c.server.trusted_proxies = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    })
    .await;
    let untrusting = spawn_app(kind).await;
    for (app, trusted) in [(&trusting, true), (&untrusting, false)] {
        for (method, path) in [
            (Method::GET, "/healthz"),
            (Method::GET, "/v1/models"),
            (Method::POST, "/v1/chat/completions"),
        ] {
            for https in [true, false] {
                let mut req = app
                    .client
                    .request(method.clone(), app.url(path))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body("{}");
                if https {
                    req = req.header("x-forwarded-proto", "https");
                }
                let r = req.send().await.unwrap();
                assert_eq!(
                    r.headers().get(header::STRICT_TRANSPORT_SECURITY).is_some(),
                    trusted && https,
                    "{method} {path}, trusted proxy: {trusted}, https: {https} ({})",
                    r.status()
                );
            }
        }
    }
}

async fn bad_routes_and_bodies(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| c.server.max_body_bytes = 4096).await;
    let who = app.signup("b@example.com").await;
    let r = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
    let r = app
        .req(Method::PUT, "/api/v1/me", Some(&who.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "method_not_allowed");
    let r = app
        .req(Method::DELETE, "/v1/models", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // Oversized (declared and chunked) bodies: 413 in the API's shape.
    let keys = format!("/api/v1/orgs/{}/keys", who.org_id);
    let r = app
        .post(&keys, &who.token, json!({"name": "x".repeat(10_000)}))
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1024])).collect();
    let r = app
        .req(Method::POST, &keys, Some(&who.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The body was not read to its end: the connection is not offered for reuse.
    assert_eq!(r.headers()[header::CONNECTION], "close");

    // Deeply nested JSON (within the size limit) is refused, not a stack overflow.
    let nested = format!("{}{}", "[".repeat(2_000), "]".repeat(2_000));
    let r = app
        .req(Method::POST, &keys, Some(&who.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let nested = format!("{{\"name\": {}1{}}}", "[".repeat(1000), "]".repeat(1000));
    let r = app
        .req(Method::POST, &keys, Some(&who.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(
        app.get("/healthz", &who.token).await.status(),
        StatusCode::OK,
        "still alive"
    );
}

async fn health_probes(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    // With the database closed, readiness fails (and liveness does not).
    app.state.services.store.close().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(r).await, "not_ready");
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
