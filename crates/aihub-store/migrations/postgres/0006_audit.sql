-- The audit log: one row per control-plane change and per sign-in attempt.
--
-- Records form one hash chain per organization (chain_id = the org's id) and one platform chain
-- for records outside any organization (chain_id = the nil UUID): `hash` is SHA-256 over the
-- previous record's hash and this record's fields, so altering, removing or reordering a row
-- breaks the chain at that row (`aihub audit verify`). `audit_heads` holds each chain's last
-- sequence number and hash; appending locks that row, which serializes a chain's writers and
-- lets verification notice rows cut off the end.
--
-- No foreign keys: records outlive what they describe. Triggers refuse UPDATE and DELETE, so
-- the application cannot rewrite history; someone with DDL rights still can, and the chain is
-- what exposes it.
CREATE TABLE audit_logs (
    id          UUID PRIMARY KEY,
    chain_id    UUID NOT NULL,
    seq         BIGINT NOT NULL,
    org_id      UUID,
    at          BIGINT NOT NULL,
    actor_type  TEXT NOT NULL CHECK (actor_type IN ('user', 'system', 'anonymous')),
    actor_id    UUID,
    actor_label TEXT,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    before_json TEXT,
    after_json  TEXT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  UUID,
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL,
    UNIQUE (chain_id, seq)
);
CREATE INDEX audit_logs_by_chain_action ON audit_logs (chain_id, action, seq);
CREATE INDEX audit_logs_by_chain_actor ON audit_logs (chain_id, actor_id, seq);

CREATE TABLE audit_heads (
    chain_id UUID PRIMARY KEY,
    seq      BIGINT NOT NULL,
    hash     BYTEA NOT NULL
);

CREATE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_logs_append_only
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
