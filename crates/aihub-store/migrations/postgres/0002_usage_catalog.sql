-- Usage records (one per metered request), their daily rollups, and the run-time catalog:
-- providers, models and prices managed through the admin API.

-- One row per request, keyed by the gateway-minted request id (UUIDv7, so it sorts by time).
-- High-volume and append-only: no foreign keys (organizations are never hard-deleted).
CREATE TABLE usage_records (
    request_id        UUID PRIMARY KEY,
    org_id            UUID NOT NULL,
    user_id           UUID,
    key_id            UUID,
    team_id           UUID,
    endpoint          TEXT NOT NULL,
    model             TEXT NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    status            INTEGER NOT NULL,
    error_code        TEXT,
    latency_ms        BIGINT NOT NULL,
    ttft_ms           BIGINT,
    streamed          BOOLEAN NOT NULL,
    estimated         BOOLEAN NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX usage_records_by_org ON usage_records (org_id, request_id);
CREATE INDEX usage_records_by_org_time ON usage_records (org_id, created_at);

-- Daily totals per (org, day, user, team, key, model, currency), maintained in the same
-- transaction that inserts the records. Absent user/team/key are the nil UUID.
CREATE TABLE usage_daily (
    org_id            UUID NOT NULL,
    day               BIGINT NOT NULL,
    user_id           UUID NOT NULL,
    team_id           UUID NOT NULL,
    key_id            UUID NOT NULL,
    model             TEXT NOT NULL,
    currency          TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    PRIMARY KEY (org_id, day, user_id, team_id, key_id, model, currency)
);

CREATE TABLE providers (
    id                     UUID PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE,
    kind                   TEXT NOT NULL CHECK (kind IN ('openai', 'azure', 'anthropic', 'mock')),
    base_url               TEXT,
    api_key_env            TEXT,
    api_key_file           TEXT,
    api_version            TEXT,
    connect_timeout_ms     BIGINT NOT NULL,
    first_byte_timeout_ms  BIGINT NOT NULL,
    total_timeout_ms       BIGINT NOT NULL,
    mock_latency_ms        BIGINT NOT NULL,
    mock_chunk_interval_ms BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

CREATE TABLE models (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    provider       TEXT NOT NULL,
    upstream_model TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Prices per million tokens in micro-units of `currency`. Rows are never updated: a new price is
-- a new row with a later `effective_from`, so past usage keeps the price it was served at.
CREATE TABLE prices (
    id                  UUID PRIMARY KEY,
    model               TEXT NOT NULL,
    currency            TEXT NOT NULL,
    input_micros        BIGINT NOT NULL,
    cached_input_micros BIGINT,
    output_micros       BIGINT NOT NULL,
    effective_from      BIGINT NOT NULL,
    source              TEXT NOT NULL,
    created_by          UUID,
    created_at          BIGINT NOT NULL,
    UNIQUE (model, effective_from)
);
