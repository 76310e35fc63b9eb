//! `aihub admin …`: operator tasks run against the database directly, through the same services
//! the API uses.

use std::io::{BufRead, Write};

use aihub_core::Email;
use aihub_core::config::Config;
use aihub_core::time::now;
use aihub_service::Services;
use aihub_service::accounts::Registration;
use aihub_store::Store;
use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::cli::AdminCommand;

/// Environment variable read for the new user's password before falling back to stdin.
pub const PASSWORD_ENV: &str = "AIHUB_ADMIN_PASSWORD";

pub async fn run(cmd: AdminCommand, config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database)
        .await
        .context("opening the database")?;
    store.migrate().await.context("applying migrations")?;
    let result = match cmd {
        AdminCommand::CreateUser(args) => {
            let password = read_password()?;
            let services = Services::build(store.clone(), &config)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
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
            let mut out = std::io::stdout().lock();
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
            Ok(())
        }
        AdminCommand::SetPlatformAdmin(args) => {
            let email = Email::parse(&args.email)?;
            let Some(user) = store.user_by_email(&email).await? else {
                bail!("no user with email {email}");
            };
            store.set_platform_admin(user.id, args.value, now()).await?;
            writeln!(
                std::io::stdout().lock(),
                "user {} platform admin: {}",
                user.id,
                args.value
            )?;
            Ok(())
        }
    };
    store.close().await;
    result
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
