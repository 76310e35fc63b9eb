//! Black-box tests of the mock provider over real HTTP: every endpoint, both protocols' stream
//! formats, every fault, authentication, the Azure paths, the control endpoints and the binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests: a failed step should fail the test loudly"
)]

mod helpers;

mod anthropic;
mod auth;
mod binary;
mod chat;
mod control;
mod faults;
mod openai_other;
mod smtp;
mod transport;
