//! Alert e-mails over SMTP (lettre, TLS by rustls). One plain-text message per alert, addressed
//! to every recipient of the budget.

use std::time::Duration;

use aihub_core::Money;
use aihub_core::config::{SmtpConfig, SmtpSecurity};
use aihub_store::BudgetAlert;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{AttemptError, display_amount};

/// Why the SMTP settings cannot be used. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error("smtp.from is not a valid mailbox (e.g. `AI Hub <alerts@example.com>`)")]
    From,
    #[error("smtp.host cannot be used for TLS")]
    Host,
}

/// Sends e-mail through the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// `None` when no `smtp.host` is configured: e-mail is off.
    pub fn new(config: &SmtpConfig) -> Result<Option<Self>, MailConfigError> {
        let Some(host) = config.host.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let from: Mailbox = config.from.parse().map_err(|_| MailConfigError::From)?;
        let builder = match config.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|_| MailConfigError::Host)?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|_| MailConfigError::Host)?,
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder
            .port(config.port)
            .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))));
        if let Some(user) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }

    /// One attempt to hand the message to the relay.
    pub async fn send(
        &self,
        to: &[Mailbox],
        subject: &str,
        body: &str,
    ) -> Result<(), AttemptError> {
        let mut recipients = Mailboxes::new();
        for m in to {
            recipients.push(m.clone());
        }
        let message = Message::builder()
            .from(self.from.clone())
            .mailbox(lettre::message::header::To::from(recipients))
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|_| AttemptError::Final("could not build the message".to_owned()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

/// SMTP 5xx is final; 4xx, timeouts and connection problems are retried. The text is fixed
/// wording and the reply code only: server replies can echo what the client sent.
fn classify(e: &lettre::transport::smtp::Error) -> AttemptError {
    let code = e.status().map(|c| c.to_string());
    if e.is_permanent() {
        AttemptError::Final(format!(
            "SMTP permanent error {}",
            code.as_deref().unwrap_or("5xx")
        ))
    } else if e.is_transient() {
        AttemptError::Retry(format!(
            "SMTP transient error {}",
            code.as_deref().unwrap_or("4xx")
        ))
    } else if e.is_timeout() {
        AttemptError::Retry("SMTP timeout".to_owned())
    } else if e.is_tls() {
        AttemptError::Retry("SMTP TLS error".to_owned())
    } else {
        AttemptError::Retry("SMTP connection failed".to_owned())
    }
}

/// Parses the budget's recipients, skipping (and reporting) any that are not addresses.
#[must_use]
pub fn recipients(addresses: &[String]) -> Vec<Mailbox> {
    addresses
        .iter()
        .filter_map(|a| match a.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(_) => {
                tracing::warn!("skipping an alert recipient that is not an e-mail address");
                None
            }
        })
        .collect()
}

/// The budget's name for people, without line breaks.
fn budget_label(a: &BudgetAlert) -> String {
    let name = a
        .budget_name
        .clone()
        .unwrap_or_else(|| a.budget_id.to_string());
    name.replace(['\r', '\n'], " ")
}

/// `[AI Hub] Budget "<name>" reached 80% (12.00 of 15.00 USD)`.
#[must_use]
pub fn subject(a: &BudgetAlert) -> String {
    format!(
        "[AI Hub] Budget \"{}\" reached {}% ({} of {} {})",
        budget_label(a),
        a.threshold_pct,
        display_amount(Money::new(a.spent_micros, a.currency)),
        display_amount(Money::new(a.amount_micros, a.currency)),
        a.currency,
    )
}

/// The plain-text body: the same facts as the webhook.
#[must_use]
pub fn body(a: &BudgetAlert) -> String {
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let period = match a.period.end(a.period_start) {
        Some(end) => format!(
            "{}, {} to {}",
            a.period.as_str(),
            fmt(a.period_start),
            fmt(end)
        ),
        None => format!("{} (never resets)", a.period.as_str()),
    };
    format!(
        "Budget \"{name}\" has reached {pct}% of its amount.\n\
         \n\
         Spent:         {spent} {cur}\n\
         Budget:        {amount} {cur}\n\
         Threshold:     {pct}%\n\
         Period:        {period}\n\
         Scope:         {scope} {scope_id}\n\
         Organization:  {org}\n\
         Budget id:     {budget}\n\
         Alert id:      {id}\n\
         Alert time:    {created}\n\
         \n\
         Each threshold is reported once per period. Spend is as seen when the threshold was \
         crossed; later requests may have added to it.\n\
         \n\
         -- \n\
         AI Hub\n",
        name = budget_label(a),
        pct = a.threshold_pct,
        spent = display_amount(Money::new(a.spent_micros, a.currency)),
        amount = display_amount(Money::new(a.amount_micros, a.currency)),
        cur = a.currency,
        scope = a.scope.as_str(),
        scope_id = a.scope_id,
        org = a.org_id,
        budget = a.budget_id,
        id = a.id,
        created = a.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aihub_core::config::SmtpConfig;
    use aihub_core::governance::{Period, ScopeType};
    use aihub_core::{Currency, OrgId};
    use aihub_mock_upstream::smtp::SmtpSink;
    use aihub_store::{Delivery, DeliveryStatus};
    use uuid::Uuid;

    fn alert() -> BudgetAlert {
        let t = aihub_core::time::now();
        BudgetAlert {
            id: Uuid::now_v7(),
            org_id: OrgId::new(),
            budget_id: Uuid::now_v7(),
            budget_name: Some("Team\r\nBcc: x@evil".into()),
            scope: ScopeType::Team,
            scope_id: Uuid::now_v7(),
            period: Period::Monthly,
            period_start: Period::Monthly.start(t),
            threshold_pct: 80,
            spent_micros: 12_000_000,
            amount_micros: 15_000_000,
            currency: Currency::parse("USD").unwrap(),
            created_at: t,
            webhook: Delivery::initial(DeliveryStatus::None),
            email: Delivery::initial(DeliveryStatus::Pending),
        }
    }

    fn config(port: u16) -> SmtpConfig {
        SmtpConfig {
            host: Some("127.0.0.1".into()),
            port,
            security: SmtpSecurity::None,
            from: "AI Hub <alerts@aihub.test>".into(),
            timeout_secs: 5,
            ..SmtpConfig::default()
        }
    }

    #[test]
    fn subject_has_the_facts_and_no_line_breaks() {
        let s = subject(&alert());
        assert_eq!(
            s,
            "[AI Hub] Budget \"Team  Bcc: x@evil\" reached 80% (12.00 of 15.00 USD)"
        );
        let b = body(&alert());
        assert!(b.contains("Spent:         12.00 USD"), "{b}");
        assert!(b.contains("monthly, "), "{b}");
    }

    #[test]
    fn no_host_means_no_mailer_and_bad_from_is_refused() {
        assert!(Mailer::new(&SmtpConfig::default()).unwrap().is_none());
        let mut c = config(25);
        c.from = "not a mailbox".into();
        assert!(matches!(Mailer::new(&c), Err(MailConfigError::From)));
        let bad = recipients(&["ok@example.com".into(), "nope".into()]);
        assert_eq!(bad.len(), 1);
    }

    #[tokio::test]
    async fn lettre_delivers_to_the_sink_and_transient_refusals_retry() {
        let sink = SmtpSink::start().await.unwrap();
        let mailer = Mailer::new(&config(sink.port())).unwrap().unwrap();
        let a = alert();
        let to = recipients(&["ops@example.com".into(), "cfo@example.com".into()]);

        sink.refuse_next(1);
        let first = mailer.send(&to, &subject(&a), &body(&a)).await;
        assert!(
            matches!(&first, Err(AttemptError::Retry(m)) if m == "SMTP transient error 451"),
            "{first:?}"
        );
        mailer.send(&to, &subject(&a), &body(&a)).await.unwrap();

        let mails = sink
            .wait_for(1, Duration::from_secs(5))
            .await
            .expect("one e-mail");
        let m = &mails[0];
        assert_eq!(m.from, "alerts@aihub.test");
        assert_eq!(m.to, vec!["ops@example.com", "cfo@example.com"]);
        assert!(m.header("subject").unwrap().contains("reached 80%"));
        assert!(m.header("bcc").is_none());
        assert!(m.body().contains("12.00 USD"), "{}", m.body());
    }

    #[tokio::test]
    async fn an_unreachable_relay_is_retried() {
        // Bind and drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mailer = Mailer::new(&config(port)).unwrap().unwrap();
        let a = alert();
        let r = mailer
            .send(&recipients(&["ops@example.com".into()]), &subject(&a), "x")
            .await;
        assert!(matches!(r, Err(AttemptError::Retry(_))), "{r:?}");
    }
}
