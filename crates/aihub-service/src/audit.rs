//! The audit log. Every service that changes control-plane state records one [`Change`] after
//! the change succeeded; sign-in attempts are recorded by [`Audit::record_sign_in`]. Records are
//! redacted of secrets before they are stored, chained per organization by the store, read
//! through an [`OrgScope`] (Owners and Admins) or by a platform admin, exported page by page,
//! and checked end to end by [`Audit::verify`] (`aihub audit verify`).

use aihub_core::OrgId;
use aihub_core::time::now;
use aihub_store::Store;
use aihub_store::audit::{
    ActorType, AuditFilter, AuditRecord, GENESIS, NewAuditRecord, Order, PLATFORM_CHAIN, chain_of,
    record_hash,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::accounts::{Actor, ClientInfo};
use crate::error::{Result, ServiceError};
use crate::orgs::OrgScope;
use crate::page::Page;
use crate::policy::Action;

/// One change to record: where, what, on which object, and its state before and after.
#[derive(Debug, Clone)]
pub struct Change {
    org: Option<OrgId>,
    action: &'static str,
    target_type: &'static str,
    target_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
}

impl Change {
    /// A change in `org` (`None`: a platform-level change) of the object `target_type`
    /// `target_id`, named `action` (`noun.verb`, e.g. `key.create`).
    pub fn new(
        org: Option<OrgId>,
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        Self {
            org,
            action,
            target_type,
            target_id: Some(target_id.to_string()),
            before: None,
            after: None,
        }
    }

    /// The object's state before the change. Secrets are redacted when recorded.
    #[must_use]
    pub fn before(mut self, value: impl Serialize) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    /// The object's state after the change. Secrets are redacted when recorded.
    #[must_use]
    pub fn after(mut self, value: impl Serialize) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }
}

/// Field names whose values are never recorded.
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "password",
    "password_hash",
    "token",
    "token_hash",
    "key_hash",
    "api_key",
    "authorization",
    "webhook_secret",
    "client_secret",
    "private_key",
];

/// Value prefixes of credentials AI Hub issues; such strings are redacted wherever they appear.
const SECRET_VALUE_PREFIXES: &[&str] = &[
    crate::crypto::API_KEY_PREFIX,
    crate::crypto::SESSION_TOKEN_PREFIX,
];

pub const REDACTED: &str = "[redacted]";

fn is_secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FIELDS.contains(&name.as_str())
        || name.ends_with("_secret")
        || name.ends_with("_token")
        || name.ends_with("_password")
        || name.ends_with("_key_hash")
}

/// Replaces every secret in `value`: values of secret-named fields, and strings that look like a
/// credential AI Hub issued.
#[must_use]
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if is_secret_field(&k) && !v.is_null() {
                        (k, Value::String(REDACTED.into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) if SECRET_VALUE_PREFIXES.iter().any(|p| s.contains(p)) => {
            Value::String(REDACTED.into())
        }
        other => other,
    }
}

/// Who acted, as the record names them.
struct Who {
    actor_type: ActorType,
    actor_id: Option<Uuid>,
    actor_label: Option<String>,
}

/// A sign-in attempt's outcome, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    Succeeded,
    WrongCredentials,
    Disabled,
    Throttled,
}

impl SignIn {
    const fn action(self) -> &'static str {
        match self {
            SignIn::Succeeded => "auth.login",
            SignIn::WrongCredentials | SignIn::Disabled | SignIn::Throttled => "auth.login_failed",
        }
    }

    const fn reason(self) -> Option<&'static str> {
        match self {
            SignIn::Succeeded => None,
            SignIn::WrongCredentials => Some("invalid_credentials"),
            SignIn::Disabled => Some("account_disabled"),
            SignIn::Throttled => Some("throttled"),
        }
    }
}

const MAX_LABEL_CHARS: usize = 254;
const MAX_USER_AGENT_CHARS: usize = 256;

/// Records per page of an export or a verification pass.
pub const BATCH: u32 = 1000;

/// The first problem verification found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The organization (`None`: the platform chain).
    pub org: Option<OrgId>,
    /// The sequence number of the first record that does not fit, or where one is missing.
    pub seq: i64,
    /// The record's id, when there is a record at that place.
    pub record_id: Option<Uuid>,
    pub reason: String,
}

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: u64,
    pub records: u64,
    /// One entry per broken chain: its first broken link.
    pub broken: Vec<Broken>,
}

/// Reads one chain page by page, oldest first, without holding more than one page.
pub struct ChainReader {
    store: Store,
    chain: Uuid,
    filter: AuditFilter,
    after: i64,
    done: bool,
}

impl ChainReader {
    /// The next page; empty when the chain (or the filtered range) is exhausted.
    pub async fn next_batch(&mut self) -> Result<Vec<AuditRecord>> {
        if self.done {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .list_audit(
                self.chain,
                &self.filter,
                Some(self.after),
                Order::OldestFirst,
                BATCH,
            )
            .await?;
        match rows.last() {
            Some(last) => self.after = last.seq,
            None => self.done = true,
        }
        if rows.len() < BATCH as usize {
            self.done = true;
        }
        Ok(rows)
    }
}

#[derive(Clone)]
pub struct Audit {
    store: Store,
}

impl Audit {
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Records `change`, made by a signed-in user.
    pub async fn record(&self, actor: &Actor, change: Change) -> Result<()> {
        self.record_user(actor.user_id, &actor.email, &actor.client, change)
            .await
    }

    /// Records `change`, made by `user` from `client` without a session: registration, where
    /// the account just created is who acted.
    pub async fn record_user(
        &self,
        user: aihub_core::UserId,
        email: &aihub_core::Email,
        client: &ClientInfo,
        change: Change,
    ) -> Result<()> {
        let who = Who {
            actor_type: ActorType::User,
            actor_id: Some(user.as_uuid()),
            actor_label: Some(email.as_str().to_owned()),
        };
        self.append(who, client, change).await
    }

    /// Records `change`, made by the operator's command line or the server itself.
    pub async fn record_system(&self, label: &str, change: Change) -> Result<()> {
        let who = Who {
            actor_type: ActorType::System,
            actor_id: None,
            actor_label: Some(label.to_owned()),
        };
        self.append(who, &ClientInfo::default(), change).await
    }

    /// Records a sign-in attempt on the platform chain. `user` is the account signed in to (or
    /// whose password was wrong); `email` is what was typed, kept to recognise attacks on
    /// accounts that do not exist.
    pub async fn record_sign_in(
        &self,
        outcome: SignIn,
        user: Option<aihub_core::UserId>,
        email: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let who = Who {
            actor_type: if outcome == SignIn::Succeeded {
                ActorType::User
            } else {
                ActorType::Anonymous
            },
            actor_id: user.map(|u| u.as_uuid()),
            actor_label: Some(email.trim().chars().take(MAX_LABEL_CHARS).collect()),
        };
        let mut change = Change::new(None, outcome.action(), "user", "");
        change.target_id = user.map(|u| u.to_string());
        if let Some(reason) = outcome.reason() {
            change = change.after(serde_json::json!({ "reason": reason }));
        }
        self.append(who, client, change).await
    }

    async fn append(&self, who: Who, client: &ClientInfo, change: Change) -> Result<()> {
        let record = NewAuditRecord {
            id: Uuid::now_v7(),
            org_id: change.org,
            at: now(),
            actor_type: who.actor_type,
            actor_id: who.actor_id,
            actor_label: who.actor_label,
            action: change.action.to_owned(),
            target_type: change.target_type.to_owned(),
            target_id: change.target_id.filter(|t| !t.is_empty()),
            before: change.before.map(|v| redact(v).to_string()),
            after: change.after.map(|v| redact(v).to_string()),
            ip: client.ip.map(|ip| ip.to_string()),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
            request_id: client.request_id,
        };
        self.store.append_audit(&record).await.map_err(|e| {
            tracing::error!(action = record.action, error = %e, "audit record not written");
            ServiceError::from(e)
        })?;
        Ok(())
    }

    /// One page of `scope`'s organization's records, newest first. Owners, Admins and platform
    /// admins only.
    pub async fn list(
        &self,
        scope: &OrgScope,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<AuditRecord, i64>> {
        scope.require(Action::AuditRead)?;
        self.page(scope.org_id().as_uuid(), filter, cursor, limit)
            .await
    }

    /// One page of the platform chain (sign-ins, platform administration). Platform admins only;
    /// anyone else is told the route does not exist.
    pub async fn list_platform(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<AuditRecord, i64>> {
        require_platform_admin(actor)?;
        self.page(PLATFORM_CHAIN, filter, cursor, limit).await
    }

    async fn page(
        &self,
        chain: Uuid,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<AuditRecord, i64>> {
        let rows = self
            .store
            .list_audit(chain, filter, cursor, Order::NewestFirst, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |r| r.seq))
    }

    /// Every record of `scope`'s organization matching `filter`, oldest first, page by page.
    pub fn export(&self, scope: &OrgScope, filter: AuditFilter) -> Result<ChainReader> {
        scope.require(Action::AuditRead)?;
        Ok(self.reader(scope.org_id().as_uuid(), filter))
    }

    /// The platform chain, for export by a platform admin.
    pub fn export_platform(&self, actor: &Actor, filter: AuditFilter) -> Result<ChainReader> {
        require_platform_admin(actor)?;
        Ok(self.reader(PLATFORM_CHAIN, filter))
    }

    fn reader(&self, chain: Uuid, filter: AuditFilter) -> ChainReader {
        ChainReader {
            store: self.store.clone(),
            chain,
            filter,
            after: 0,
            done: false,
        }
    }

    /// Recomputes every chain (or only `org`'s) from its first record and reports, per chain,
    /// the first record whose hash, link or position is not what the chain says it must be, and
    /// chains whose head does not match their last record (records cut off the end).
    pub async fn verify(&self, org: Option<OrgId>) -> Result<VerifyReport> {
        let heads = self.store.audit_heads().await?;
        let mut report = VerifyReport::default();
        for chain in self.store.audit_chains_without_head().await? {
            report.broken.push(Broken {
                org: org_of(chain),
                seq: 0,
                record_id: None,
                reason: "records exist but the chain head is missing".into(),
            });
        }
        for head in heads {
            if org.is_some_and(|o| chain_of(Some(o)) != head.chain_id) {
                continue;
            }
            report.chains += 1;
            let mut reader = self.reader(head.chain_id, AuditFilter::default());
            let mut prev = GENESIS.to_vec();
            let mut expected_seq = 1;
            let mut broken = None;
            'chain: loop {
                let batch = reader.next_batch().await?;
                if batch.is_empty() {
                    break;
                }
                for r in batch {
                    report.records += 1;
                    let reason = if r.seq != expected_seq {
                        Some(format!(
                            "record {expected_seq} is missing (next is {})",
                            r.seq
                        ))
                    } else if r.prev_hash != prev {
                        Some("link to the previous record does not match".to_owned())
                    } else if r.hash != record_hash(&prev, r.chain_id, r.seq, &r.record) {
                        Some("contents do not match the record's hash".to_owned())
                    } else if chain_of(r.record.org_id) != r.chain_id {
                        Some("record is in another organization's chain".to_owned())
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        broken = Some(Broken {
                            org: org_of(head.chain_id),
                            seq: expected_seq,
                            record_id: Some(r.record.id),
                            reason,
                        });
                        break 'chain;
                    }
                    prev = r.hash;
                    expected_seq += 1;
                }
            }
            let last_seq = expected_seq - 1;
            if broken.is_none() && (last_seq != head.seq || prev != head.hash) {
                broken = Some(Broken {
                    org: org_of(head.chain_id),
                    seq: last_seq + 1,
                    record_id: None,
                    reason: format!(
                        "the chain head says {} records, {} found in order",
                        head.seq, last_seq
                    ),
                });
            }
            report.broken.extend(broken);
        }
        Ok(report)
    }
}

fn org_of(chain: Uuid) -> Option<OrgId> {
    (chain != PLATFORM_CHAIN).then(|| OrgId::from_uuid(chain))
}

fn require_platform_admin(actor: &Actor) -> Result<()> {
    if actor.is_platform_admin {
        Ok(())
    } else {
        Err(ServiceError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secret_fields_and_issued_credentials_anywhere() {
        let v = json!({
            "name": "prod",
            "secret": "s3cr3t",
            "webhook_secret": "whsec",
            "Password": "hunter2",
            "session_token": "t",
            "nested": [{ "api_key": "upstream" }, { "note": "sk-aihub-abcdef" }],
            "header": "Bearer aihub-sess-xyz",
            "expires_at": null,
            "count": 3,
        });
        let r = redact(v);
        assert_eq!(
            r,
            json!({
                "name": "prod",
                "secret": REDACTED,
                "webhook_secret": REDACTED,
                "Password": REDACTED,
                "session_token": REDACTED,
                "nested": [{ "api_key": REDACTED }, { "note": REDACTED }],
                "header": REDACTED,
                "expires_at": null,
                "count": 3,
            })
        );
    }

    #[test]
    fn sign_in_outcomes_name_their_action_and_reason() {
        assert_eq!(SignIn::Succeeded.action(), "auth.login");
        assert_eq!(SignIn::Succeeded.reason(), None);
        for (o, r) in [
            (SignIn::WrongCredentials, "invalid_credentials"),
            (SignIn::Disabled, "account_disabled"),
            (SignIn::Throttled, "throttled"),
        ] {
            assert_eq!(o.action(), "auth.login_failed");
            assert_eq!(o.reason(), Some(r));
        }
    }
}
