//! Running the `aihub` binary from process-level tests: a clean environment, a config file in
//! the test's directory, and waiting until `serve` says where it listens.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_aihub");

/// `aihub --config DIR/aihub.toml`, run in `dir`, with no `AIHUB__*` or `RUST_LOG` from the
/// environment of the test run.
pub fn aihub(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .arg("--config")
        .arg(dir.join("aihub.toml"))
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("AIHUB__") || k == "AIHUB_CONFIG" {
            c.env_remove(k);
        }
    }
    c
}

/// Spawns `cmd` (an `aihub … serve`) and returns it with its base URL once it is serving.
pub fn serve(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.split("listen=").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway did not start");
    (child, format!("http://{addr}"))
}
