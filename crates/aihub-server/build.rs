//! Turns the presence of test-service URLs into cfg flags, so that tests needing PostgreSQL or
//! Redis are compiled as `#[ignore]`d (reported as skipped) on machines without them, and run
//! where the URLs are set.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(aihub_pg)");
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_DATABASE_URL");
    if std::env::var_os("AIHUB_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_pg");
    }
}
