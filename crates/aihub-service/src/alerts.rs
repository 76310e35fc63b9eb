//! Budget alerts: the gateway reports each threshold crossing with [`Alerts::notify`], which
//! never blocks; the worker ([`Alerts::run`]) records the alert once per budget, period and
//! threshold (the store's unique key decides, across instances) and delivers it by signed
//! webhook and e-mail, with retries. Members read the record through [`Alerts::list`].

use std::sync::{Arc, Mutex, PoisonError};

use aihub_core::config::{AlertsConfig, SmtpConfig};
use aihub_core::governance::BudgetRule;
use aihub_core::time::now;
use aihub_store::{AlertChannel, BudgetAlert, Delivery, DeliveryStatus, Store};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Result, ServiceError};
use crate::notify::mail::{self, Mailer};
use crate::notify::webhook::WebhookSender;
use crate::notify::{AlertEvent, RetryPolicy, deliver_with_retries};
use crate::orgs::OrgScope;
use crate::page::Page;
use crate::policy::Action;

/// Crossings waiting for the worker; beyond this, new ones are dropped with a warning.
pub const QUEUE_CAPACITY: usize = 1024;
/// Alerts being delivered at once.
const MAX_IN_FLIGHT: usize = 32;

/// A budget's spend reached one of its thresholds in the period starting at `period_start`.
#[derive(Debug, Clone)]
pub struct Crossing {
    pub budget: BudgetRule,
    pub period_start: DateTime<Utc>,
    /// The threshold crossed, in percent of the budget's amount.
    pub threshold_pct: u32,
    /// Spend in the period, in micro-units of the budget's currency, once crossed.
    pub spent_micros: i64,
}

/// The alert service. Cheap to clone; every clone shares one queue.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tx: mpsc::Sender<Crossing>,
    /// Taken by the one worker that runs.
    rx: Mutex<Option<mpsc::Receiver<Crossing>>>,
    webhook: WebhookSender,
    /// `None`: no `smtp.host`, e-mail is off.
    mailer: Option<Mailer>,
    retry: RetryPolicy,
}

impl Alerts {
    /// Fails on unusable SMTP settings (a bad `smtp.from`).
    pub fn new(store: Store, smtp: &SmtpConfig, config: &AlertsConfig) -> Result<Self> {
        let mailer = Mailer::new(smtp)
            .map_err(|e| ServiceError::invalid("invalid_config", e.to_string()))?;
        let webhook = WebhookSender::new(std::time::Duration::from_millis(
            config.webhook_timeout_ms.max(1),
        ))
        .map_err(ServiceError::internal)?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                tx,
                rx: Mutex::new(Some(rx)),
                webhook,
                mailer,
                retry: RetryPolicy {
                    max_attempts: config.max_attempts.max(1),
                    base: std::time::Duration::from_millis(config.retry_base_ms),
                },
            }),
        })
    }

    /// Hands a crossing to the worker. Never blocks and never fails: if the queue is full the
    /// crossing is dropped with a warning (the request path must not wait for alerts).
    pub fn notify(&self, c: Crossing) {
        match self.inner.tx.try_send(c) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(c)) => tracing::warn!(
                budget_id = %c.budget.id,
                threshold_pct = c.threshold_pct,
                "budget alert queue is full; dropping a threshold crossing"
            ),
            Err(mpsc::error::TrySendError::Closed(c)) => tracing::warn!(
                budget_id = %c.budget.id,
                threshold_pct = c.threshold_pct,
                "budget alert worker is gone; dropping a threshold crossing"
            ),
        }
    }

    /// The worker: records and delivers crossings until `stop` fires. Then crossings still
    /// queued are recorded and get one delivery attempt each, deliveries waiting for a retry end
    /// as failed, and attempts under way are finished (bounded by the webhook and SMTP
    /// timeouts). Only one worker runs; a second call returns at once.
    pub async fn run(self, stop: CancellationToken) {
        let taken = self
            .inner
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut rx) = taken else {
            tracing::warn!("budget alert worker already running");
            return;
        };
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = rx.recv(), if tasks.len() < MAX_IN_FLIGHT => {
                    let Some(c) = next else { break };
                    let this = self.clone();
                    let stop = stop.clone();
                    tasks.spawn(async move { this.process(c, &stop).await });
                }
            }
        }
        rx.close();
        while let Some(c) = rx.recv().await {
            let this = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move { this.process(c, &stop).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Records one crossing and, if it is the first of its (budget, period, threshold),
    /// delivers it. Returns the alert as finally recorded, or `None` if it had fired already
    /// or could not be recorded.
    pub async fn process(&self, c: Crossing, stop: &CancellationToken) -> Option<BudgetAlert> {
        let inner = &*self.inner;
        let b = &c.budget;
        let has_webhook = b.webhook_url.is_some() && b.webhook_secret.is_some();
        let has_email = inner.mailer.is_some() && !b.alert_emails.is_empty();
        let status = |on: bool| {
            Delivery::initial(if on {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::None
            })
        };
        let mut alert = BudgetAlert {
            id: Uuid::now_v7(),
            org_id: b.org_id,
            budget_id: b.id,
            budget_name: b.name.clone(),
            scope: b.scope,
            scope_id: b.scope_id,
            period: b.period,
            period_start: c.period_start,
            threshold_pct: c.threshold_pct,
            spent_micros: c.spent_micros,
            amount_micros: b.amount_micros,
            currency: b.currency,
            created_at: now(),
            webhook: status(has_webhook),
            email: status(has_email),
        };
        if !self.insert(&alert, stop).await? {
            tracing::debug!(
                budget_id = %b.id,
                threshold_pct = c.threshold_pct,
                "budget threshold already reported for this period"
            );
            return None;
        }
        tracing::info!(
            alert_id = %alert.id,
            org_id = %alert.org_id,
            budget_id = %alert.budget_id,
            threshold_pct = alert.threshold_pct,
            "budget threshold crossed"
        );
        let webhook = async {
            match (&b.webhook_url, &b.webhook_secret) {
                (Some(url), Some(secret)) if has_webhook => {
                    Some(self.deliver_webhook(&alert, url, secret, stop).await)
                }
                _ => None,
            }
        };
        let email = async {
            if has_email {
                Some(self.deliver_email(&alert, &b.alert_emails, stop).await)
            } else {
                None
            }
        };
        let (w, e) = tokio::join!(webhook, email);
        if let Some(w) = w {
            alert.webhook = w;
        }
        if let Some(e) = e {
            alert.email = e;
        }
        Some(alert)
    }

    /// Inserts the alert, retrying database errors; `Some(false)` if it exists already.
    async fn insert(&self, alert: &BudgetAlert, stop: &CancellationToken) -> Option<bool> {
        let retry = self.inner.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.store.insert_budget_alert(alert).await {
                Ok(inserted) => return Some(inserted),
                Err(e) if attempt >= retry.max_attempts => {
                    tracing::error!(
                        error = %e,
                        budget_id = %alert.budget_id,
                        threshold_pct = alert.threshold_pct,
                        "could not record a budget alert; it is lost"
                    );
                    return None;
                }
                Err(e) => tracing::warn!(error = %e, "could not record a budget alert; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(retry.backoff(attempt)) => {}
                () = stop.cancelled() => return None,
            }
        }
    }

    async fn save(&self, id: Uuid, channel: AlertChannel, d: Delivery) {
        if let Err(e) = self
            .inner
            .store
            .update_alert_delivery(id, channel, &d)
            .await
        {
            tracing::error!(error = %e, alert_id = %id, "could not record alert delivery state");
        }
    }

    async fn deliver_webhook(
        &self,
        alert: &BudgetAlert,
        url: &str,
        secret: &aihub_core::secret::Secret,
        stop: &CancellationToken,
    ) -> Delivery {
        let body = match serde_json::to_vec(&AlertEvent::from_alert(alert)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not serialize a budget alert");
                Vec::new()
            }
        };
        let sender = &self.inner.webhook;
        let id = alert.id;
        let body = &body;
        let d = deliver_with_retries(
            self.inner.retry,
            stop,
            move || sender.post(url, secret, id, body),
            |s| self.save(id, AlertChannel::Webhook, s),
        )
        .await;
        self.save(id, AlertChannel::Webhook, d.clone()).await;
        log_outcome("webhook", alert, &d);
        d
    }

    async fn deliver_email(
        &self,
        alert: &BudgetAlert,
        addresses: &[String],
        stop: &CancellationToken,
    ) -> Delivery {
        let Some(mailer) = &self.inner.mailer else {
            return Delivery::initial(DeliveryStatus::None);
        };
        let to = mail::recipients(addresses);
        let id = alert.id;
        let d = if to.is_empty() {
            Delivery {
                status: DeliveryStatus::Failed,
                attempts: 0,
                last_error: Some("no valid recipient address".to_owned()),
                delivered_at: None,
            }
        } else {
            let subject = mail::subject(alert);
            let text = mail::body(alert);
            let (to, subject, text) = (&to, &subject, &text);
            deliver_with_retries(
                self.inner.retry,
                stop,
                move || mailer.send(to, subject, text),
                |s| self.save(id, AlertChannel::Email, s),
            )
            .await
        };
        self.save(id, AlertChannel::Email, d.clone()).await;
        log_outcome("email", alert, &d);
        d
    }

    /// Alerts of the organization (optionally of one budget), newest first.
    pub async fn list(
        &self,
        scope: &OrgScope,
        budget_id: Option<Uuid>,
        cursor: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<BudgetAlert, Uuid>> {
        scope.require(Action::BudgetsRead)?;
        let rows = self
            .inner
            .store
            .list_budget_alerts(scope.org_id(), budget_id, cursor, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |a| a.id))
    }

    /// One alert of the organization; another organization's is not found.
    pub async fn get(&self, scope: &OrgScope, id: Uuid) -> Result<BudgetAlert> {
        scope.require(Action::BudgetsRead)?;
        self.inner
            .store
            .get_budget_alert(scope.org_id(), id)
            .await?
            .ok_or(ServiceError::NotFound)
    }
}

fn log_outcome(channel: &'static str, alert: &BudgetAlert, d: &Delivery) {
    match d.status {
        DeliveryStatus::Delivered => tracing::info!(
            channel,
            alert_id = %alert.id,
            attempts = d.attempts,
            "budget alert delivered"
        ),
        _ => tracing::warn!(
            channel,
            alert_id = %alert.id,
            budget_id = %alert.budget_id,
            attempts = d.attempts,
            error = d.last_error.as_deref().unwrap_or(""),
            "budget alert not delivered"
        ),
    }
}
