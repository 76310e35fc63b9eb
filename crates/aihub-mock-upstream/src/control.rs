//! The `/__mock/*` control endpoints, so tests running the binary out of process can set faults
//! and reconcile against the ledger: `POST fault`, `GET ledger`, `GET requests`, `GET stats`,
//! `POST reset`.

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::Fault;
use crate::body::MockBody;
use crate::respond::json_response;
use crate::state::Shared;

/// Control requests are tiny.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// `POST /__mock/fault`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultCommand {
    fault: FaultKind,
    /// HTTP status for `status`; 500 if absent.
    status: Option<u16>,
    /// `Retry-After` seconds for `status`.
    retry_after: Option<u32>,
    /// Content chunks before `stall` / `close` strike; 0 if absent.
    after_chunks: Option<u32>,
    /// Only the next this many requests; until changed if absent.
    times: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultKind {
    None,
    Status,
    Hang,
    Stall,
    Close,
    Malformed,
    OmitUsage,
    #[serde(alias = "error_body_with_secret")]
    Secret,
}

impl FaultCommand {
    pub(crate) fn fault(&self) -> Fault {
        let after = self.after_chunks.unwrap_or(0);
        match self.fault {
            FaultKind::None => Fault::None,
            FaultKind::Status => Fault::Status {
                status: self.status.unwrap_or(500),
                retry_after: self.retry_after,
            },
            FaultKind::Hang => Fault::HangBeforeHeaders,
            FaultKind::Stall => Fault::StallAfterChunks(after),
            FaultKind::Close => Fault::CloseAfterChunks(after),
            FaultKind::Malformed => Fault::MalformedSse,
            FaultKind::OmitUsage => Fault::OmitUsage,
            FaultKind::Secret => Fault::ErrorBodyWithSecret,
        }
    }
}

#[derive(Serialize)]
struct Ack {
    ok: bool,
}

#[derive(Serialize)]
struct Stats {
    request_count: u64,
    ledger_entries: usize,
}

#[derive(Serialize)]
struct Problem<'a> {
    error: &'a str,
}

fn problem(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(status, &Problem { error: message })
}

pub(crate) async fn handle(
    shared: &Shared,
    method: &Method,
    command: &str,
    body: Incoming,
) -> Response<MockBody> {
    match (method, command) {
        (&Method::POST, "fault") => {
            let bytes = match Limited::new(body, MAX_COMMAND_BYTES).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return problem(StatusCode::BAD_REQUEST, "unreadable body"),
            };
            match serde_json::from_slice::<FaultCommand>(&bytes) {
                Ok(cmd) => {
                    shared.set_fault(cmd.fault(), cmd.times);
                    json_response(StatusCode::OK, &Ack { ok: true })
                }
                Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        (&Method::POST, "reset") => {
            shared.reset();
            json_response(StatusCode::OK, &Ack { ok: true })
        }
        (&Method::GET, "ledger") => json_response(StatusCode::OK, &shared.ledger()),
        (&Method::GET, "requests") => json_response(StatusCode::OK, &shared.requests()),
        (&Method::GET, "stats") => json_response(
            StatusCode::OK,
            &Stats {
                request_count: shared.request_count(),
                ledger_entries: shared.ledger().len(),
            },
        ),
        _ => problem(StatusCode::NOT_FOUND, "unknown control endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Fault {
        serde_json::from_str::<FaultCommand>(json).unwrap().fault()
    }

    #[test]
    fn commands_map_to_faults() {
        assert_eq!(parse(r#"{"fault":"none"}"#), Fault::None);
        assert_eq!(
            parse(r#"{"fault":"status","status":429,"retry_after":1}"#),
            Fault::Status {
                status: 429,
                retry_after: Some(1)
            }
        );
        assert_eq!(
            parse(r#"{"fault":"status"}"#),
            Fault::Status {
                status: 500,
                retry_after: None
            }
        );
        assert_eq!(parse(r#"{"fault":"hang"}"#), Fault::HangBeforeHeaders);
        assert_eq!(
            parse(r#"{"fault":"stall","after_chunks":3}"#),
            Fault::StallAfterChunks(3)
        );
        assert_eq!(
            parse(r#"{"fault":"close","after_chunks":2,"times":1}"#),
            Fault::CloseAfterChunks(2)
        );
        assert_eq!(parse(r#"{"fault":"malformed"}"#), Fault::MalformedSse);
        assert_eq!(parse(r#"{"fault":"omit_usage"}"#), Fault::OmitUsage);
        assert_eq!(parse(r#"{"fault":"secret"}"#), Fault::ErrorBodyWithSecret);
        assert!(serde_json::from_str::<FaultCommand>(r#"{"fault":"explode"}"#).is_err());
        assert!(serde_json::from_str::<FaultCommand>(r#"{"fault":"none","oops":1}"#).is_err());
    }
}
