//! The audit log (F10): one append-only row per admin action (end, restart, mark, delete),
//! download or export, listen-in, change of users, roles or keys, and console sign-in
//! (success or failure): who (`admin-token` or a user id), when, what, to which resource,
//! from which client address, with what outcome. Rows are only ever appended (the table's
//! triggers refuse UPDATE and DELETE); reading them is `GET /v1/audit` and `/v1/audit.csv`.

use crate::access::authz::Principal;
use crate::store::access::AuditStore;
use crate::store::access::{AuditFilter, AuditRow};
use std::net::IpAddr;
use std::sync::Arc;

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by authorization (or a failed sign-in).
    Denied,
    /// Allowed, but failed (the error code says why).
    Failed(&'static str),
}

impl Outcome {
    pub fn as_str(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Denied => "denied".into(),
            Outcome::Failed(code) => format!("failed:{code}"),
        }
    }
}

/// One thing to write down.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// `admin-token`, a user id, or for a failed sign-in the email tried.
    pub actor: &'a str,
    /// e.g. `session.end`, `recording.download`, `user.create`, `signin`.
    pub action: &'a str,
    /// The session, campaign, user, key or file acted on.
    pub resource: &'a str,
    pub campaign: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub outcome: Outcome,
}

/// The audit log over the store.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn AuditStore>) -> AuditLog {
        AuditLog { store }
    }

    /// Appends `entry` at now. A failure to write is logged (as an error) and otherwise
    /// ignored: the action it describes already happened.
    pub async fn record(&self, entry: Entry<'_>) {
        let row = AuditRow {
            seq: 0,
            at: crate::now_ms(),
            actor: entry.actor.to_string(),
            action: entry.action.to_string(),
            resource: entry.resource.to_string(),
            campaign_id: entry.campaign.map(str::to_string),
            client: entry.client.map(|ip| ip.to_string()),
            outcome: entry.outcome.as_str(),
        };
        if let Err(e) = self.store.append_audit(&row).await {
            tracing::error!(error = %e, action = entry.action, resource = entry.resource, "writing the audit log failed");
        }
    }

    /// As [`AuditLog::record`] for `principal`.
    pub async fn record_for(
        &self,
        principal: &Principal,
        client: Option<IpAddr>,
        action: &str,
        resource: &str,
        campaign: Option<&str>,
        outcome: Outcome,
    ) {
        self.record(Entry {
            actor: &principal.id,
            action,
            resource,
            campaign,
            client,
            outcome,
        })
        .await;
    }

    pub async fn list(&self, filter: &AuditFilter) -> crate::store::Result<Vec<AuditRow>> {
        self.store.list_audit(filter).await
    }
}

use crate::exports::formula_safe as safe;

/// The CSV of audit rows (RFC 4180, CRLF; times RFC 3339), header first.
pub fn to_csv(rows: &[AuditRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record([
        "seq",
        "at",
        "actor",
        "action",
        "resource",
        "campaign_id",
        "client",
        "outcome",
    ])?;
    for r in rows {
        w.write_record([
            r.seq.to_string(),
            crate::timestamps::rfc3339(r.at)
                .as_str()
                .unwrap_or_default()
                .to_string(),
            safe(&r.actor),
            safe(&r.action),
            safe(&r.resource),
            safe(r.campaign_id.as_deref().unwrap_or_default()),
            safe(r.client.as_deref().unwrap_or_default()),
            safe(&r.outcome),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
