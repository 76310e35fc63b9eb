-- Usage records (one per metered request), their daily rollups, and the run-time catalog:
-- providers, models and prices managed through the admin API.

-- One row per request, keyed by the gateway-minted request id (UUIDv7, so it sorts by time).
-- High-volume and append-only: no foreign keys (organizations are never hard-deleted).
CREATE TABLE usage_records (
    request_id        BLOB PRIMARY KEY NOT NULL,
    org_id            BLOB NOT NULL,
    user_id           BLOB,
    key_id            BLOB,
    team_id           BLOB,
    endpoint          TEXT NOT NULL,
    model             TEXT NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    cost_micros       INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    status            INTEGER NOT NULL,
    error_code        TEXT,
    latency_ms        INTEGER NOT NULL,
    ttft_ms           INTEGER,
    streamed          INTEGER NOT NULL,
    estimated         INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX usage_records_by_org ON usage_records (org_id, request_id);
CREATE INDEX usage_records_by_org_time ON usage_records (org_id, created_at);

-- Daily totals per (org, day, user, team, key, model, currency), maintained in the same
-- transaction that inserts the records. Absent user/team/key are the nil UUID.
CREATE TABLE usage_daily (
    org_id            BLOB NOT NULL,
    day               INTEGER NOT NULL,
    user_id           BLOB NOT NULL,
    team_id           BLOB NOT NULL,
    key_id            BLOB NOT NULL,
    model             TEXT NOT NULL,
    currency          TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    cost_micros       INTEGER NOT NULL,
    PRIMARY KEY (org_id, day, user_id, team_id, key_id, model, currency)
) STRICT;

CREATE TABLE providers (
    id                     BLOB PRIMARY KEY NOT NULL,
    name                   TEXT NOT NULL UNIQUE,
    kind                   TEXT NOT NULL CHECK (kind IN ('openai', 'azure', 'anthropic', 'mock')),
    base_url               TEXT,
    api_key_env            TEXT,
    api_key_file           TEXT,
    api_version            TEXT,
    connect_timeout_ms     INTEGER NOT NULL,
    first_byte_timeout_ms  INTEGER NOT NULL,
    total_timeout_ms       INTEGER NOT NULL,
    mock_latency_ms        INTEGER NOT NULL,
    mock_chunk_interval_ms INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
) STRICT;

CREATE TABLE models (
    id             BLOB PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    provider       TEXT NOT NULL,
    upstream_model TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

-- Prices per million tokens in micro-units of `currency`. Rows are never updated: a new price is
-- a new row with a later `effective_from`, so past usage keeps the price it was served at.
CREATE TABLE prices (
    id                  BLOB PRIMARY KEY NOT NULL,
    model               TEXT NOT NULL,
    currency            TEXT NOT NULL,
    input_micros        INTEGER NOT NULL,
    cached_input_micros INTEGER,
    output_micros       INTEGER NOT NULL,
    effective_from      INTEGER NOT NULL,
    source              TEXT NOT NULL,
    created_by          BLOB,
    created_at          INTEGER NOT NULL,
    UNIQUE (model, effective_from)
) STRICT;
