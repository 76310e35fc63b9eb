-- Budget alerts: one row each time a budget's spend crosses one of its thresholds within one
-- period, with the delivery state of its webhook and its e-mails.

-- Append-only record: no foreign key to the budget, so an alert outlives an edited or deleted
-- budget. The unique key is what makes a threshold fire once per period, even when several
-- gateway instances see the crossing at the same time: only one insert wins.
CREATE TABLE budget_alerts (
    id                   UUID PRIMARY KEY,
    org_id               UUID NOT NULL,
    budget_id            UUID NOT NULL,
    budget_name          TEXT,
    scope_type           TEXT NOT NULL,
    scope_id             UUID NOT NULL,
    period               TEXT NOT NULL,
    period_start         BIGINT NOT NULL,
    threshold_pct        BIGINT NOT NULL,
    spent_micros         BIGINT NOT NULL,
    amount_micros        BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    webhook_status       TEXT NOT NULL CHECK (webhook_status IN ('pending', 'delivered', 'failed', 'none')),
    webhook_attempts     BIGINT NOT NULL DEFAULT 0,
    webhook_last_error   TEXT,
    webhook_delivered_at BIGINT,
    email_status         TEXT NOT NULL CHECK (email_status IN ('pending', 'delivered', 'failed', 'none')),
    email_attempts       BIGINT NOT NULL DEFAULT 0,
    email_last_error     TEXT,
    email_delivered_at   BIGINT,
    UNIQUE (budget_id, period_start, threshold_pct)
);
CREATE INDEX budget_alerts_by_org ON budget_alerts (org_id, id);
CREATE INDEX budget_alerts_by_budget ON budget_alerts (org_id, budget_id, id);
