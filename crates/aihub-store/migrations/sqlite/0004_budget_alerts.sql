-- Budget alerts: one row each time a budget's spend crosses one of its thresholds within one
-- period, with the delivery state of its webhook and its e-mails.

-- Append-only record: no foreign key to the budget, so an alert outlives an edited or deleted
-- budget. The unique key is what makes a threshold fire once per period, even when several
-- gateway instances see the crossing at the same time: only one insert wins.
CREATE TABLE budget_alerts (
    id                   BLOB PRIMARY KEY NOT NULL,
    org_id               BLOB NOT NULL,
    budget_id            BLOB NOT NULL,
    budget_name          TEXT,
    scope_type           TEXT NOT NULL,
    scope_id             BLOB NOT NULL,
    period               TEXT NOT NULL,
    period_start         INTEGER NOT NULL,
    threshold_pct        INTEGER NOT NULL,
    spent_micros         INTEGER NOT NULL,
    amount_micros        INTEGER NOT NULL,
    currency             TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    webhook_status       TEXT NOT NULL CHECK (webhook_status IN ('pending', 'delivered', 'failed', 'none')),
    webhook_attempts     INTEGER NOT NULL DEFAULT 0,
    webhook_last_error   TEXT,
    webhook_delivered_at INTEGER,
    email_status         TEXT NOT NULL CHECK (email_status IN ('pending', 'delivered', 'failed', 'none')),
    email_attempts       INTEGER NOT NULL DEFAULT 0,
    email_last_error     TEXT,
    email_delivered_at   INTEGER,
    UNIQUE (budget_id, period_start, threshold_pct)
) STRICT;
CREATE INDEX budget_alerts_by_org ON budget_alerts (org_id, id);
CREATE INDEX budget_alerts_by_budget ON budget_alerts (org_id, budget_id, id);
