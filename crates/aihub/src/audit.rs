//! `aihub audit verify`: recomputes the audit log's hash chains from the database and prints, per
//! broken chain, its first broken link. Reads only: it neither migrates nor writes.

use std::io::Write;
use std::process::ExitCode;

use aihub_core::OrgId;
use aihub_core::config::Config;
use aihub_service::audit::{Audit, Broken, VerifyReport};
use aihub_store::Store;
use anyhow::Context;

use crate::cli::AuditCommand;

pub async fn run(cmd: AuditCommand, config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&config.database)
        .await
        .context("opening the database")?;
    let result = match cmd {
        AuditCommand::Verify(args) => verify(&store, args.org).await,
    };
    store.close().await;
    result
}

async fn verify(store: &Store, org: Option<OrgId>) -> anyhow::Result<ExitCode> {
    let report = Audit::new(store.clone())
        .verify(org)
        .await
        .map_err(|e| anyhow::anyhow!("verifying the audit log: {e}"))?;
    let mut out = std::io::stdout().lock();
    write_report(&mut out, &report, org)?;
    Ok(if report.broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn chain_name(org: Option<OrgId>) -> String {
    org.map_or_else(|| "platform".to_owned(), |o| format!("org {o}"))
}

fn write_report(
    out: &mut impl Write,
    report: &VerifyReport,
    org: Option<OrgId>,
) -> std::io::Result<()> {
    if report.chains == 0
        && let Some(o) = org
    {
        writeln!(out, "no audit records for organization {o}")?;
    }
    writeln!(
        out,
        "checked {} chain(s), {} record(s)",
        report.chains, report.records
    )?;
    for Broken {
        org,
        seq,
        record_id,
        reason,
    } in &report.broken
    {
        let record = record_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        writeln!(
            out,
            "BROKEN chain={} seq={seq} record={record}: {reason}",
            chain_name(*org)
        )?;
    }
    if report.broken.is_empty() {
        writeln!(out, "audit log intact")
    } else {
        writeln!(
            out,
            "audit log BROKEN: {} of {} chain(s)",
            report.broken.len(),
            report.chains
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_each_broken_chain() {
        let org = OrgId::new();
        let id = uuid::Uuid::now_v7();
        let report = VerifyReport {
            chains: 2,
            records: 10,
            broken: vec![Broken {
                org: Some(org),
                seq: 4,
                record_id: Some(id),
                reason: "contents do not match the record's hash".into(),
            }],
        };
        let mut out = Vec::new();
        write_report(&mut out, &report, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("checked 2 chain(s), 10 record(s)"), "{text}");
        assert!(
            text.contains(&format!(
                "BROKEN chain=org {org} seq=4 record={id}: contents"
            )),
            "{text}"
        );
        assert!(
            text.ends_with("audit log BROKEN: 1 of 2 chain(s)\n"),
            "{text}"
        );
    }
}
