//! The HTTP server loop: hyper with HTTP/1.1 and HTTP/2, a header-read timeout (slow-loris
//! clients are dropped), the peer address with every request, and graceful shutdown that lets
//! in-flight requests finish within the grace period. Proxied `/v1` calls go straight to their
//! handler ([`crate::routes::v1::direct`]), the peer address handed to it; everything else goes
//! through the router, the peer address in the request's extensions (`ConnectInfo`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::routes::v1;
use crate::state::AppState;

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the application of `state` ([`crate::routes::router`], and the proxied `/v1` calls
/// without it) on `listener` until `shutdown` resolves, then waits up to `grace` for open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let app = crate::routes::router(state.clone());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (app, state) = (app.clone(), state.clone());
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // Only what the request's path needs is cloned (the state or the router), and only
            // the router's requests carry the peer address in their extensions.
            match v1::direct_endpoint(req.method(), req.uri().path()) {
                Some(endpoint) => Either::Left(
                    v1::direct(state.clone(), endpoint, req, peer).map(Ok::<_, Infallible>),
                ),
                None => {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    Either::Right(app.clone().oneshot(req.map(axum::body::Body::new)))
                }
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing remaining connections"
        );
    }
}
