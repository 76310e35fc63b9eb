//! The `aihub` binary end to end: `serve` with no configuration creates and migrates
//! `./data/aihub.db` and stops cleanly on SIGTERM; `migrate`; `admin create-user` reading the
//! password from stdin or the environment; configuration errors naming the key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aihub");

fn aihub(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("AIHUB_CONFIG")
        .env_remove("AIHUB_ADMIN_PASSWORD")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("AIHUB__") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn serve_creates_the_database_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = aihub(dir.path())
        .env("AIHUB__SERVER__LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let addr = loop {
        let line = lines.next().expect("server exited before serving").unwrap();
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.trim().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
    };
    assert!(
        dir.path().join("data/aihub.db").is_file(),
        "./data/aihub.db created"
    );

    // A raw HTTP request, to stay free of client libraries here.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"ready\""));

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn admin_create_user_reads_the_password_from_stdin_or_env() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = aihub(dir.path()).arg("migrate").output().unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let mut child = aihub(dir.path())
        .args([
            "admin",
            "create-user",
            "--email",
            "root@example.com",
            "--platform-admin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long operator password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("root@example.com") && stdout.contains("(platform admin)"),
        "{stdout}"
    );
    assert!(!stdout.contains("a long operator password"));

    let out = aihub(dir.path())
        .args(["admin", "create-user", "--email", "ops@example.com"])
        .env("AIHUB_ADMIN_PASSWORD", "another good password")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("platform admin"));

    // Weak password and duplicates are refused with a clear message.
    let out = aihub(dir.path())
        .args(["admin", "create-user", "--email", "weak@example.com"])
        .env("AIHUB_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));
    let out = aihub(dir.path())
        .args(["admin", "create-user", "--email", "ops@example.com"])
        .env("AIHUB_ADMIN_PASSWORD", "another good password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = aihub(dir.path())
        .args([
            "admin",
            "set-platform-admin",
            "--email",
            "ops@example.com",
            "--value",
            "true",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn configuration_errors_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aihub.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nport = 1\n",
    )
    .unwrap();
    let out = aihub(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}
