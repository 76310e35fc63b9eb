-- Rate limits, budgets and plans: the rules an organization's requests are held to.
-- Times are Unix milliseconds (INTEGER); ids are 16-byte BLOBs; money is integer micro-units.

-- Subscription plans: default rate limits for every org on the plan and a monthly quota.
-- NULL in a limit or quota column means "no limit of this kind".
CREATE TABLE plans (
    id                   BLOB PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL UNIQUE,
    rpm                  INTEGER CHECK (rpm > 0),
    tpm                  INTEGER CHECK (tpm > 0),
    concurrency          INTEGER CHECK (concurrency > 0),
    monthly_tokens       INTEGER CHECK (monthly_tokens > 0),
    monthly_spend_micros INTEGER CHECK (monthly_spend_micros > 0),
    currency             TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;

INSERT INTO plans (id, name, rpm, tpm, concurrency, monthly_tokens, monthly_spend_micros,
                   currency, created_at, updated_at) VALUES
    (X'00000000000070008000000000000001', 'free', 20, 40000, 2, 1000000, NULL, 'USD', 0, 0),
    (X'00000000000070008000000000000002', 'pro', 600, 1000000, 20, NULL, 500000000, 'USD', 0, 0),
    (X'00000000000070008000000000000003', 'enterprise', 6000, 10000000, 200, NULL, NULL, 'USD', 0, 0);

-- NULL: the `free` plan.
ALTER TABLE orgs ADD COLUMN plan_id BLOB REFERENCES plans (id);

-- Limits per scope (key, user, team or the org itself), for one model or all of them ('').
CREATE TABLE rate_limits (
    id          BLOB PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    scope_type  TEXT NOT NULL CHECK (scope_type IN ('key', 'user', 'team', 'org')),
    scope_id    BLOB NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    rpm         INTEGER CHECK (rpm > 0),
    tpm         INTEGER CHECK (tpm > 0),
    concurrency INTEGER CHECK (concurrency > 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (org_id, scope_type, scope_id, model)
) STRICT;

-- Spend caps per scope and calendar period. `thresholds` and `alert_emails` are JSON arrays.
CREATE TABLE budgets (
    id             BLOB PRIMARY KEY NOT NULL,
    org_id         BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    scope_type     TEXT NOT NULL CHECK (scope_type IN ('key', 'user', 'team', 'org')),
    scope_id       BLOB NOT NULL,
    name           TEXT,
    amount_micros  INTEGER NOT NULL CHECK (amount_micros > 0),
    currency       TEXT NOT NULL,
    period         TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'total')),
    policy         TEXT NOT NULL CHECK (policy IN ('block', 'throttle')),
    throttle_rpm   INTEGER CHECK (throttle_rpm > 0),
    thresholds     TEXT NOT NULL,
    webhook_url    TEXT,
    webhook_secret TEXT,
    alert_emails   TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX budgets_by_org ON budgets (org_id, id);

-- Spend so far of one key or user (budgets sum the daily rollups from the period's first day).
CREATE INDEX usage_daily_by_key ON usage_daily (org_id, key_id, day);
CREATE INDEX usage_daily_by_user ON usage_daily (org_id, user_id, day);
CREATE INDEX usage_daily_by_team ON usage_daily (org_id, team_id, day);
