//! API tests: the real application on port 0 with a fresh database per test, driven over HTTP.
//! Every test runs on SQLite and on PostgreSQL (the latter reported as ignored unless
//! `AIHUB_TEST_DATABASE_URL` is set).
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
mod surface;

mod access;
mod admin;
mod alerts;
mod audit;
mod auth;
mod browser;
mod budgets;
mod errors;
mod gateway;
mod gateway_admin;
mod governor;
mod invitations;
mod isolation;
mod keys;
mod limits;
mod members;
mod openai_sdk;
mod orgs;
mod own_key_caps;
mod redis_outage;
mod teams;
mod web;
mod web_access;
mod web_admin;
mod web_audit;
mod web_budgets;
mod web_client;
mod web_keys;
mod web_org;
mod web_usage;
mod webdriver;
