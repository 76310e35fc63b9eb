-- Rate limits, budgets and plans: the rules an organization's requests are held to.
-- Times are Unix milliseconds (BIGINT); ids are UUID; money is integer micro-units.

-- Subscription plans: default rate limits for every org on the plan and a monthly quota.
-- NULL in a limit or quota column means "no limit of this kind".
CREATE TABLE plans (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    rpm                  BIGINT CHECK (rpm > 0),
    tpm                  BIGINT CHECK (tpm > 0),
    concurrency          BIGINT CHECK (concurrency > 0),
    monthly_tokens       BIGINT CHECK (monthly_tokens > 0),
    monthly_spend_micros BIGINT CHECK (monthly_spend_micros > 0),
    currency             TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

INSERT INTO plans (id, name, rpm, tpm, concurrency, monthly_tokens, monthly_spend_micros,
                   currency, created_at, updated_at) VALUES
    ('00000000-0000-7000-8000-000000000001', 'free', 20, 40000, 2, 1000000, NULL, 'USD', 0, 0),
    ('00000000-0000-7000-8000-000000000002', 'pro', 600, 1000000, 20, NULL, 500000000, 'USD', 0, 0),
    ('00000000-0000-7000-8000-000000000003', 'enterprise', 6000, 10000000, 200, NULL, NULL, 'USD', 0, 0);

-- NULL: the `free` plan.
ALTER TABLE orgs ADD COLUMN plan_id UUID REFERENCES plans (id);

-- Limits per scope (key, user, team or the org itself), for one model or all of them ('').
CREATE TABLE rate_limits (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    scope_type  TEXT NOT NULL CHECK (scope_type IN ('key', 'user', 'team', 'org')),
    scope_id    UUID NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    rpm         BIGINT CHECK (rpm > 0),
    tpm         BIGINT CHECK (tpm > 0),
    concurrency BIGINT CHECK (concurrency > 0),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, scope_type, scope_id, model)
);

-- Spend caps per scope and calendar period. `thresholds` and `alert_emails` are JSON arrays.
CREATE TABLE budgets (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    scope_type     TEXT NOT NULL CHECK (scope_type IN ('key', 'user', 'team', 'org')),
    scope_id       UUID NOT NULL,
    name           TEXT,
    amount_micros  BIGINT NOT NULL CHECK (amount_micros > 0),
    currency       TEXT NOT NULL,
    period         TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'total')),
    policy         TEXT NOT NULL CHECK (policy IN ('block', 'throttle')),
    throttle_rpm   BIGINT CHECK (throttle_rpm > 0),
    thresholds     TEXT NOT NULL,
    webhook_url    TEXT,
    webhook_secret TEXT,
    alert_emails   TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX budgets_by_org ON budgets (org_id, id);

-- Spend so far of one key or user (budgets sum the daily rollups from the period's first day).
CREATE INDEX usage_daily_by_key ON usage_daily (org_id, key_id, day);
CREATE INDEX usage_daily_by_user ON usage_daily (org_id, user_id, day);
CREATE INDEX usage_daily_by_team ON usage_daily (org_id, team_id, day);
