//! Empty on purpose: the crate exists for its test, `tests/alloc_guard.rs`, which counts heap
//! allocations per `/v1` request against `budget.toml` (see docs/benchmarks.md).
