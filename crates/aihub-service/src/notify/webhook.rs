//! Signed webhook delivery. Each attempt POSTs the same JSON body with a fresh timestamp and an
//! HMAC-SHA256 signature over `"<timestamp>.<body>"`, so receivers can check both who sent it
//! and when (and refuse replays outside their window).

use std::time::Duration;

use aihub_core::secret::Secret;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use sha2::Sha256;
use uuid::Uuid;

use super::AttemptError;

pub const HEADER_ID: &str = "aihub-webhook-id";
pub const HEADER_TIMESTAMP: &str = "aihub-webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "aihub-signature";

/// `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
#[must_use]
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks an `aihub-signature` header the way a receiver should: the `v1` HMAC over
/// `"<t>.<body>"` in constant time, and `t` within `tolerance` of `now` (Unix seconds).
#[must_use]
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.extend(hex::decode(s).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    let window = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(t) > window.unsigned_abs() {
        return false;
    }
    signatures.iter().any(|s| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(s).is_ok()
    })
}

/// Posts webhooks. Follows no redirects: a receiver must answer at the URL it registered.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
}

impl WebhookSender {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("aihub-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// One attempt. The error text never holds the URL (it may carry a token) or the response.
    pub async fn post(
        &self,
        url: &str,
        secret: &Secret,
        id: Uuid,
        body: &[u8],
    ) -> Result<(), AttemptError> {
        let ts = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(HEADER_ID, id.to_string())
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SIGNATURE, signature(secret.expose(), ts, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| AttemptError::Retry(describe(&e).to_owned()))?;
        classify(response.status())
    }
}

fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_builder() {
        "invalid webhook URL"
    } else {
        "request failed"
    }
}

/// 2xx is delivered; 408, 429 and 5xx are retried; any other status (4xx, and 3xx since
/// redirects are not followed) is final.
fn classify(status: StatusCode) -> Result<(), AttemptError> {
    let text = format!("HTTP {}", status.as_u16());
    if status.is_success() {
        Ok(())
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(AttemptError::Retry(text))
    } else {
        Err(AttemptError::Final(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"a":1}"#;
        let header = signature("whsec_test", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        let window = Duration::from_secs(300);
        assert!(verify("whsec_test", &header, body, 1_700_000_100, window));
        assert!(!verify("whsec_other", &header, body, 1_700_000_100, window));
        assert!(!verify("whsec_test", &header, b"{}", 1_700_000_100, window));
        assert!(!verify("whsec_test", &header, body, 1_700_000_301, window));
        assert!(!verify("whsec_test", "v1=00", body, 1_700_000_000, window));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "1.x"), computed with Python's hmac module.
        assert_eq!(
            signature("key", 1, b"x"),
            "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(StatusCode::NO_CONTENT), Ok(()));
        for retried in [500, 502, 503, 408, 429] {
            let s = StatusCode::from_u16(retried).unwrap();
            assert!(matches!(classify(s), Err(AttemptError::Retry(_))), "{s}");
        }
        for final_ in [400, 401, 404, 410, 301] {
            let s = StatusCode::from_u16(final_).unwrap();
            assert!(matches!(classify(s), Err(AttemptError::Final(_))), "{s}");
        }
    }
}
