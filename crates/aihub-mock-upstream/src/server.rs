//! The HTTP side: the accept loop (HTTP/1.1 keep-alive and h2c, `TCP_NODELAY`), routing of the
//! provider paths, authentication, and where faults that need no request body strike.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderMap};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::body::MockBody;
use crate::respond::{Ctx, Dialect, Outcome, error_response, with_retry_after};
use crate::state::Shared;
use crate::{Fault, RecordedRequest, anthropic, control, openai};

/// Largest request body the mock reads.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How long open connections get to finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Accepts connections until `shutdown` resolves, then gives them a short grace period. Dropping
/// the returned future (e.g. aborting its task) drops every connection at once.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Idle keep-alive connections must stay open for as long as the client pools them.
        .header_read_timeout(None)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        // Out of file descriptors and the like: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                let builder = Arc::clone(&builder);
                let shared = Arc::clone(&shared);
                let watcher = graceful.watcher();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    // A client going away mid-response is routine here; nothing to report.
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    connections.shutdown().await;
}

/// The provider endpoint a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Chat,
    Completions,
    Embeddings,
    Messages,
    Models,
}

struct Route<'p> {
    api: Api,
    dialect: Dialect,
    deployment: Option<&'p str>,
    ledger_path: Cow<'static, str>,
}

fn route<'p>(
    method: &Method,
    path: &'p str,
    anthropic_version: bool,
) -> Result<Route<'p>, (StatusCode, &'static str)> {
    let plain = |api, dialect, p: &'static str| Route {
        api,
        dialect,
        deployment: None,
        ledger_path: Cow::Borrowed(p),
    };
    let (route, expected) = match path {
        "/v1/chat/completions" => (
            plain(Api::Chat, Dialect::OpenAi, "/v1/chat/completions"),
            Method::POST,
        ),
        "/v1/completions" => (
            plain(Api::Completions, Dialect::OpenAi, "/v1/completions"),
            Method::POST,
        ),
        "/v1/embeddings" => (
            plain(Api::Embeddings, Dialect::OpenAi, "/v1/embeddings"),
            Method::POST,
        ),
        "/v1/messages" => (
            plain(Api::Messages, Dialect::Anthropic, "/v1/messages"),
            Method::POST,
        ),
        "/v1/models" => {
            let dialect = if anthropic_version {
                Dialect::Anthropic
            } else {
                Dialect::OpenAi
            };
            (plain(Api::Models, dialect, "/v1/models"), Method::GET)
        }
        _ => {
            let (deployment, operation) = path
                .strip_prefix("/openai/deployments/")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(deployment, _)| !deployment.is_empty())
                .ok_or((StatusCode::NOT_FOUND, "Resource not found"))?;
            let api = match operation {
                "chat/completions" => Api::Chat,
                "completions" => Api::Completions,
                "embeddings" => Api::Embeddings,
                _ => return Err((StatusCode::NOT_FOUND, "Resource not found")),
            };
            let route = Route {
                api,
                dialect: Dialect::Azure,
                deployment: Some(deployment),
                ledger_path: Cow::Owned(path.to_owned()),
            };
            (route, Method::POST)
        }
    };
    if *method == expected {
        Ok(route)
    } else {
        Err((StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The credential the client presented in `dialect`'s header, if any.
fn credential(headers: &HeaderMap, dialect: Dialect) -> Option<&str> {
    match dialect {
        Dialect::OpenAi => header(headers, AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim),
        Dialect::Azure => header(headers, "api-key"),
        Dialect::Anthropic => header(headers, "x-api-key"),
    }
}

fn unauthorized_message(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => {
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
        }
        Dialect::Azure => {
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."
        }
        Dialect::Anthropic => "invalid x-api-key",
    }
}

/// Whatever secret-looking header value the request carried, verbatim.
fn any_secret(headers: &HeaderMap) -> &str {
    [AUTHORIZATION.as_str(), "x-api-key", "api-key"]
        .into_iter()
        .find_map(|name| header(headers, name))
        .unwrap_or("<no credential sent>")
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if let Some(command) = path.strip_prefix("/__mock/") {
        return control::handle(&shared, &parts.method, command, body).await;
    }
    shared.count_request();
    let anthropic_version = parts.headers.contains_key("anthropic-version");
    let fallback_dialect = if anthropic_version || path == "/v1/messages" {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error_response(
                fallback_dialect,
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            );
        }
    };
    if shared.options.record_requests {
        shared.record(RecordedRequest::from_http(&parts, &bytes));
    }
    let route = match route(&parts.method, path, anthropic_version) {
        Ok(route) => route,
        Err((status, message)) => return error_response(fallback_dialect, status, message),
    };
    let mut ctx = Ctx {
        shared: &shared,
        dialect: route.dialect,
        fault: Fault::None,
        path: route.ledger_path,
        request_id: header(&parts.headers, "x-aihub-request-id").map(str::to_owned),
        deployment: route.deployment,
    };
    if let Some(expected) = shared.options.api_key.as_deref()
        && credential(&parts.headers, route.dialect) != Some(expected)
    {
        return ctx.error(
            StatusCode::UNAUTHORIZED,
            unauthorized_message(route.dialect),
        );
    }
    if route.api == Api::Models {
        let outcome = match route.dialect {
            Dialect::Anthropic => anthropic::models(&ctx),
            Dialect::OpenAi | Dialect::Azure => openai::models(&ctx),
        };
        return respond(outcome).await;
    }
    if route.api == Api::Messages && !anthropic_version {
        return ctx.error(
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
        );
    }

    ctx.fault = shared.take_fault();
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    match ctx.fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let response = ctx.error(status, "The mock upstream was told to fail this request.");
            return match retry_after {
                Some(seconds) => with_retry_after(response, seconds),
                None => response,
            };
        }
        Fault::HangBeforeHeaders => return std::future::pending().await,
        Fault::ErrorBodyWithSecret => {
            let message = format!(
                "Internal error while using credential {}",
                any_secret(&parts.headers)
            );
            return ctx.error(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
        _ => {}
    }
    let outcome = match route.api {
        Api::Chat => openai::chat(&ctx, &bytes),
        Api::Completions => openai::completions(&ctx, &bytes),
        Api::Embeddings => openai::embeddings(&ctx, &bytes),
        Api::Messages => anthropic::messages(&ctx, &bytes),
        Api::Models => openai::models(&ctx),
    };
    respond(outcome).await
}

async fn respond(outcome: Outcome) -> Response<MockBody> {
    match outcome {
        Outcome::Respond(response) => response,
        Outcome::Hang => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_provider_paths() {
        let r = route(&Method::POST, "/v1/chat/completions", false).unwrap();
        assert_eq!((r.api, r.dialect), (Api::Chat, Dialect::OpenAi));
        let r = route(&Method::POST, "/v1/messages", true).unwrap();
        assert_eq!((r.api, r.dialect), (Api::Messages, Dialect::Anthropic));
        let r = route(&Method::GET, "/v1/models", true).unwrap();
        assert_eq!((r.api, r.dialect), (Api::Models, Dialect::Anthropic));
        let r = route(&Method::POST, "/openai/deployments/gpt4o/embeddings", false).unwrap();
        assert_eq!(
            (r.api, r.dialect, r.deployment),
            (Api::Embeddings, Dialect::Azure, Some("gpt4o"))
        );
        assert_eq!(r.ledger_path, "/openai/deployments/gpt4o/embeddings");
        assert!(route(&Method::GET, "/v1/chat/completions", false).is_err());
        assert!(
            route(
                &Method::POST,
                "/openai/deployments//chat/completions",
                false
            )
            .is_err()
        );
        assert!(route(&Method::POST, "/nope", false).is_err());
    }

    #[test]
    fn credentials_come_from_each_providers_header() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer sk-1".parse().unwrap());
        h.insert("x-api-key", "sk-2".parse().unwrap());
        h.insert("api-key", "sk-3".parse().unwrap());
        assert_eq!(credential(&h, Dialect::OpenAi), Some("sk-1"));
        assert_eq!(credential(&h, Dialect::Anthropic), Some("sk-2"));
        assert_eq!(credential(&h, Dialect::Azure), Some("sk-3"));
        assert_eq!(any_secret(&h), "Bearer sk-1");
    }
}
