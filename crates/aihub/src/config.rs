//! Layered configuration: built-in defaults → `aihub.toml` → environment (`AIHUB__SECTION__KEY`)
//! → command-line flags. Unknown keys anywhere are an error naming the key.

use std::path::{Path, PathBuf};

use aihub_core::config::Config;
use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::cli::{Cli, Command};

/// The file read when neither `--config` nor `AIHUB_CONFIG` names one.
const DEFAULT_FILE: &str = "aihub.toml";

pub fn load(cli: &Cli) -> anyhow::Result<Config> {
    let file = match &cli.config {
        Some(path) => {
            anyhow::ensure!(path.is_file(), "config file {} not found", path.display());
            Some(path.clone())
        }
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    let mut figment = layered(file.as_deref());
    if let Some(url) = &cli.database_url {
        figment = figment.merge(("database.url", url));
    }
    if let Some(Command::Serve(args)) = &cli.command
        && let Some(listen) = args.listen
    {
        figment = figment.merge(("server.listen", listen.to_string()));
    }
    figment.extract::<Config>().context("invalid configuration")
}

/// Defaults, then the file (if any), then `AIHUB__*` environment variables.
fn layered(file: Option<&Path>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment.merge(Env::prefixed("AIHUB__").split("__"))
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment's Jail API returns its own large error type"
)]
mod tests {
    use super::*;
    use clap::Parser;
    use figment::Jail;

    fn load_args(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        load(&cli).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn defaults_without_any_config() {
        Jail::expect_with(|_| {
            let c = load_args(&["aihub"]).unwrap();
            assert_eq!(c, Config::default());
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "aihub.toml",
                r#"
                [server]
                listen = "127.0.0.1:7000"
                max_body_bytes = 1000
                [auth]
                allow_registration = false
                "#,
            )?;
            // File over defaults.
            let c = load_args(&["aihub"]).unwrap();
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:7000");
            assert!(!c.auth.allow_registration);
            // Env over file.
            jail.set_env("AIHUB__SERVER__LISTEN", "127.0.0.1:7001");
            jail.set_env("AIHUB__AUTH__LOGIN_THROTTLE__MAX_DELAY_SECS", "60");
            let c = load_args(&["aihub"]).unwrap();
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:7001");
            assert_eq!(c.server.max_body_bytes, 1000);
            assert_eq!(c.auth.login_throttle.max_delay_secs, 60);
            // Flags over env.
            let c = load_args(&[
                "aihub",
                "serve",
                "--listen",
                "127.0.0.1:7002",
                "--database-url",
                "postgres://x/y",
            ])
            .unwrap();
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:7002");
            assert_eq!(c.database.url, "postgres://x/y");
            Ok(())
        });
    }

    #[test]
    fn explicit_file_from_flag_or_env() {
        Jail::expect_with(|jail| {
            jail.create_file("custom.toml", "[database]\nurl = \"sqlite://custom.db\"\n")?;
            let c = load_args(&["aihub", "--config", "custom.toml"]).unwrap();
            assert_eq!(c.database.url, "sqlite://custom.db");
            jail.set_env("AIHUB_CONFIG", "custom.toml");
            let c = load_args(&["aihub", "migrate"]).unwrap();
            assert_eq!(c.database.url, "sqlite://custom.db");
            let err = load_args(&["aihub", "--config", "missing.toml"]).unwrap_err();
            assert!(err.contains("missing.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("aihub.toml", "[server]\nlisten_addr = \"127.0.0.1:1\"\n")?;
            let err = load_args(&["aihub"]).unwrap_err();
            assert!(err.contains("listen_addr"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("AIHUB__DATABSE__URL", "sqlite://x.db");
            let err = load_args(&["aihub"]).unwrap_err();
            assert!(err.contains("databse"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("AIHUB__SERVER__LISTEN", "not an address");
            let err = load_args(&["aihub"]).unwrap_err();
            assert!(err.to_lowercase().contains("server.listen"), "{err}");
            Ok(())
        });
    }
}
