//! Delivery of budget alerts: the event every channel describes, signed webhooks
//! ([`webhook`]), e-mail over SMTP ([`mail`]), and the retry loop they share.

pub mod mail;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use aihub_core::Money;
use aihub_core::money::format_decimal_micros;
use aihub_store::{BudgetAlert, Delivery, DeliveryStatus};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest wait between two attempts, however many came before.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Longest stored error text.
const MAX_ERROR_CHARS: usize = 200;

/// Why one delivery attempt failed. The text is short, fixed wording plus a status code: never
/// a URL, a response body or anything that could hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// Worth another attempt (network error, timeout, 5xx, 408, 429, SMTP 4xx).
    Retry(String),
    /// The receiver refused it for good; no more attempts.
    Final(String),
}

impl AttemptError {
    fn message(&self) -> &str {
        match self {
            Self::Retry(m) | Self::Final(m) => m,
        }
    }
}

/// How often and how patiently a channel is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub base: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1_u32 << attempt.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// Runs `attempt` until it succeeds, fails for good, runs out of attempts, or `stop` fires
/// between two attempts. `progress` sees the state after every attempt but the last; the final
/// state is returned.
pub async fn deliver_with_retries<A, F, P, PF>(
    policy: RetryPolicy,
    stop: &CancellationToken,
    mut attempt: A,
    mut progress: P,
) -> Delivery
where
    A: FnMut() -> F,
    F: Future<Output = Result<(), AttemptError>>,
    P: FnMut(Delivery) -> PF,
    PF: Future<Output = ()>,
{
    let max = policy.max_attempts.max(1);
    let mut state = Delivery::initial(DeliveryStatus::Pending);
    loop {
        state.attempts += 1;
        match attempt().await {
            Ok(()) => {
                state.status = DeliveryStatus::Delivered;
                state.delivered_at = Some(aihub_core::time::now());
                return state;
            }
            Err(e) => {
                state.last_error = Some(truncate(e.message()));
                if matches!(e, AttemptError::Final(_)) || state.attempts >= max {
                    state.status = DeliveryStatus::Failed;
                    return state;
                }
            }
        }
        progress(state.clone()).await;
        tokio::select! {
            () = tokio::time::sleep(policy.backoff(state.attempts)) => {}
            () = stop.cancelled() => {
                state.status = DeliveryStatus::Failed;
                state.last_error = Some(format!(
                    "{}; stopped before the next attempt",
                    state.last_error.as_deref().unwrap_or("not delivered")
                ));
                return state;
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

/// The webhook payload: `{"type", "id", "created_at", "data": {…}}`.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Uuid,
    pub created_at: String,
    pub data: AlertData,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertData {
    pub org_id: Uuid,
    pub budget_id: Uuid,
    pub budget_name: Option<String>,
    pub scope_type: &'static str,
    pub scope_id: Uuid,
    pub period: &'static str,
    pub period_start: String,
    /// `null` for a budget that never resets.
    pub period_end: Option<String>,
    pub threshold_percent: u32,
    /// Decimal amount of `currency`, e.g. `"15"` or `"12.5"`.
    pub amount: String,
    pub amount_micros: i64,
    pub spent: String,
    pub spent_micros: i64,
    pub currency: String,
}

/// The event type of a threshold crossing.
pub const THRESHOLD_CROSSED: &str = "budget.threshold_crossed";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl AlertEvent {
    #[must_use]
    pub fn from_alert(a: &BudgetAlert) -> Self {
        Self {
            kind: THRESHOLD_CROSSED,
            id: a.id,
            created_at: a.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: AlertData {
                org_id: a.org_id.as_uuid(),
                budget_id: a.budget_id,
                budget_name: a.budget_name.clone(),
                scope_type: a.scope.as_str(),
                scope_id: a.scope_id,
                period: a.period.as_str(),
                period_start: rfc3339(a.period_start),
                period_end: a.period.end(a.period_start).map(rfc3339),
                threshold_percent: a.threshold_pct,
                amount: format_decimal_micros(a.amount_micros),
                amount_micros: a.amount_micros,
                spent: format_decimal_micros(a.spent_micros),
                spent_micros: a.spent_micros,
                currency: a.currency.to_string(),
            },
        }
    }
}

/// An amount rounded to the currency's minor unit with all its digits, e.g. `12.00`.
#[must_use]
pub fn display_amount(money: Money) -> String {
    let rounded = money.round_to_minor_unit();
    let digits = rounded.currency.minor_unit_digits().min(6) as usize;
    let full = rounded.to_decimal_string(); // six decimals
    match full.split_once('.') {
        Some((whole, _)) if digits == 0 => whole.to_owned(),
        Some((whole, frac)) => format!("{whole}.{}", frac.get(..digits).unwrap_or(frac)),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aihub_core::Currency;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(100),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(200), MAX_BACKOFF);
    }

    #[test]
    fn amounts_show_minor_units() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(display_amount(Money::new(12_000_000, usd)), "12.00");
        assert_eq!(display_amount(Money::new(12_345_678, usd)), "12.35");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(display_amount(Money::new(1_500_000_000, jpy)), "1500");
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn retries_until_delivered() {
        let calls = AtomicU32::new(0);
        let seen = std::sync::Mutex::new(Vec::new());
        let d = deliver_with_retries(
            policy(5),
            &CancellationToken::new(),
            || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(AttemptError::Retry("HTTP 500".into()))
                } else {
                    Ok(())
                }
            },
            |s| {
                seen.lock().unwrap().push(s.attempts);
                async {}
            },
        )
        .await;
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.attempts, 3);
        assert_eq!(d.last_error.as_deref(), Some("HTTP 500"));
        assert!(d.delivered_at.is_some());
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    }

    #[tokio::test]
    async fn final_errors_and_exhaustion_fail() {
        let d = deliver_with_retries(
            policy(5),
            &CancellationToken::new(),
            || async { Err(AttemptError::Final("HTTP 404".into())) },
            |_| async {},
        )
        .await;
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1));
        let d = deliver_with_retries(
            policy(3),
            &CancellationToken::new(),
            || async { Err(AttemptError::Retry("timeout".into())) },
            |_| async {},
        )
        .await;
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 3));
        assert_eq!(d.last_error.as_deref(), Some("timeout"));
    }

    #[tokio::test]
    async fn stop_ends_the_wait_for_a_retry() {
        let stop = CancellationToken::new();
        stop.cancel();
        let d = deliver_with_retries(
            RetryPolicy {
                max_attempts: 5,
                base: Duration::from_secs(3600),
            },
            &stop,
            || async { Err(AttemptError::Retry("HTTP 503".into())) },
            |_| async {},
        )
        .await;
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1));
        assert!(d.last_error.unwrap().starts_with("HTTP 503"));
    }
}
