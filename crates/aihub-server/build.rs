//! Turns the presence of test-service URLs and tools into cfg flags, so that tests needing them
//! are compiled as `#[ignore]`d (reported as skipped) on machines without them, and run where
//! they are set: `AIHUB_TEST_DATABASE_URL` (PostgreSQL), `AIHUB_TEST_REDIS_URL` (Redis) and `AIHUB_TEST_PYTHON` (a Python with
//! the official `openai` package) and `AIHUB_TEST_CHROMEDRIVER` (chromedriver for the headless
//! Chromium browser tests).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(aihub_browser)");
    println!("cargo::rustc-check-cfg=cfg(aihub_pg)");
    println!("cargo::rustc-check-cfg=cfg(aihub_python)");
    println!("cargo::rustc-check-cfg=cfg(aihub_redis)");
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_REDIS_URL");
    if std::env::var_os("AIHUB_TEST_REDIS_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_redis");
    }
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_PYTHON");
    if std::env::var_os("AIHUB_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_pg");
    }
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_CHROMEDRIVER");
    if std::env::var_os("AIHUB_TEST_CHROMEDRIVER").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_browser");
    }
    if std::env::var_os("AIHUB_TEST_PYTHON").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_python");
    }
}
