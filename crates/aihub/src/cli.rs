//! Command-line interface. Secrets are never accepted as arguments (they would show in `ps` and
//! shell history): passwords come from stdin or an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use aihub_core::OrgId;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "aihub",
    version,
    about = "AI Hub: a multi-tenant AI API gateway with real-time billing"
)]
pub struct Cli {
    /// Configuration file (TOML). Defaults to ./aihub.toml when that file exists.
    #[arg(long, global = true, env = "AIHUB_CONFIG")]
    pub config: Option<PathBuf>,

    /// Database URL (`sqlite://…` or `postgres://…`); overrides `database.url`.
    #[arg(long, global = true)]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway (`/v1`) and the management API (`/api/v1`); the default.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Administrative tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

impl Default for Command {
    fn default() -> Self {
        Command::Serve(ServeArgs::default())
    }
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on; overrides `server.listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user (with a personal organization). The password is read from the
    /// AIHUB_ADMIN_PASSWORD environment variable if set, otherwise from the first line of stdin.
    CreateUser(CreateUserArgs),
    /// Grant or revoke platform-admin rights of an existing user.
    SetPlatformAdmin(SetPlatformAdminArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chains and report the first broken link of each broken
    /// chain. Exit status 0 when every chain is intact, 1 when one is broken (or verification
    /// could not run).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check only this organization's chain (by id); default: every chain, the platform's
    /// included.
    #[arg(long)]
    pub org: Option<OrgId>,
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Make the user a platform admin (operator of this AI Hub).
    #[arg(long)]
    pub platform_admin: bool,
}

#[derive(Debug, Args)]
pub struct SetPlatformAdminArgs {
    #[arg(long)]
    pub email: String,
    /// `true` to grant, `false` to revoke.
    #[arg(long, action = clap::ArgAction::Set)]
    pub value: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default() {
        let cli = Cli::try_parse_from(["aihub"]).unwrap();
        assert!(cli.command.is_none());
        assert!(matches!(Command::default(), Command::Serve(_)));
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "aihub",
            "serve",
            "--listen",
            "0.0.0.0:9000",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(cli.database_url.as_deref(), Some("sqlite://x.db"));
        match cli.command {
            Some(Command::Serve(a)) => assert_eq!(a.listen, Some("0.0.0.0:9000".parse().unwrap())),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "aihub",
            "admin",
            "create-user",
            "--email",
            "a@b.c",
            "--platform-admin",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Admin(AdminCommand::CreateUser(ref a))) if a.platform_admin)
        );
        let cli = Cli::try_parse_from(["aihub", "audit", "verify"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Audit(AuditCommand::Verify(VerifyArgs {
                org: None
            })))
        ));
        let org = OrgId::new();
        let cli =
            Cli::try_parse_from(["aihub", "audit", "verify", "--org", &org.to_string()]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Audit(AuditCommand::Verify(VerifyArgs { org: Some(o) }))) if o == org)
        );
        assert!(Cli::try_parse_from(["aihub", "audit", "verify", "--org", "acme"]).is_err());
        // There is no way to pass a password on the command line.
        assert!(
            Cli::try_parse_from([
                "aihub",
                "admin",
                "create-user",
                "--email",
                "a@b.c",
                "--password",
                "x"
            ])
            .is_err()
        );
    }
}
