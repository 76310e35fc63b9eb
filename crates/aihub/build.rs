//! Turns the presence of test-service URLs into cfg flags, so that tests needing PostgreSQL
//! and Redis are compiled as `#[ignore]`d (reported as skipped) on machines without them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(aihub_pg)");
    println!("cargo::rustc-check-cfg=cfg(aihub_redis)");
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_REDIS_URL");
    if std::env::var_os("AIHUB_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_pg");
    }
    if std::env::var_os("AIHUB_TEST_REDIS_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_redis");
    }
}
