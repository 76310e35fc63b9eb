//! `aihub admin …`: operator tasks run against the database directly, through the same services
//! the API uses. Each change is recorded in the platform chain of the audit log, done by the
//! system as [`CLI_ACTOR`].

use std::io::{BufRead, Write};

use aihub_core::config::Config;
use aihub_service::Services;
use aihub_service::accounts::{Registration, audit_view, new_account_view};
use aihub_service::audit::Change;
use aihub_store::Store;
use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::cli::AdminCommand;

/// Environment variable read for the new user's password before falling back to stdin.
pub const PASSWORD_ENV: &str = "AIHUB_ADMIN_PASSWORD";

/// Who the audit log says made a change from the command line.
pub const CLI_ACTOR: &str = "aihub admin (command line)";

pub async fn run(cmd: AdminCommand, config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database)
        .await
        .context("opening the database")?;
    store.migrate().await.context("applying migrations")?;
    let result = run_with(cmd, &config, store.clone()).await;
    store.close().await;
    result
}

async fn run_with(cmd: AdminCommand, config: &Config, store: Store) -> anyhow::Result<()> {
    let services = Services::build(store, config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = std::io::stdout().lock();
    match cmd {
        AdminCommand::CreateUser(args) => {
            let password = read_password()?;
            let (user, org) = services
                .accounts
                .create_user(
                    Registration {
                        email: args.email,
                        password,
                        name: args.name,
                    },
                    args.platform_admin,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            services
                .audit
                .record_system(
                    CLI_ACTOR,
                    Change::new(None, "user.create", "user", user.id)
                        .after(new_account_view(&user, &org)),
                )
                .await
                .map_err(|e| anyhow::anyhow!("recording the change in the audit log: {e}"))?;
            writeln!(
                out,
                "created user {} <{}>{} with organization {}",
                user.id,
                user.email,
                if user.is_platform_admin {
                    " (platform admin)"
                } else {
                    ""
                },
                org.id
            )?;
        }
        AdminCommand::SetPlatformAdmin(args) => {
            let (before, user) = services
                .admin
                .set_platform_admin_by_email(&args.email, args.value)
                .await
                .map_err(|e| match e {
                    aihub_service::ServiceError::NotFound => {
                        anyhow::anyhow!("no user with email {}", args.email)
                    }
                    other => anyhow::anyhow!("{other}"),
                })?;
            services
                .audit
                .record_system(
                    CLI_ACTOR,
                    Change::new(None, "user.platform_admin", "user", user.id)
                        .before(audit_view(&before))
                        .after(audit_view(&user)),
                )
                .await
                .map_err(|e| anyhow::anyhow!("recording the change in the audit log: {e}"))?;
            writeln!(
                out,
                "user {} platform admin: {}",
                user.id, user.is_platform_admin
            )?;
        }
    }
    Ok(())
}

/// The password from `AIHUB_ADMIN_PASSWORD`, or the first line of stdin (without its newline).
fn read_password() -> anyhow::Result<SecretString> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(SecretString::from(p));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password given: set {PASSWORD_ENV} or pipe it on stdin");
    }
    Ok(SecretString::from(password))
}
