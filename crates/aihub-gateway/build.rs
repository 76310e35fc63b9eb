//! Turns `AIHUB_TEST_REDIS_URL` into the `aihub_redis` cfg flag, so that tests needing Redis are
//! compiled as `#[ignore]`d (reported as skipped) on machines without it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(aihub_redis)");
    println!("cargo::rerun-if-env-changed=AIHUB_TEST_REDIS_URL");
    if std::env::var_os("AIHUB_TEST_REDIS_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=aihub_redis");
    }
}
