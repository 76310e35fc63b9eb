-- The audit log: one row per control-plane change and per sign-in attempt.
--
-- Records form one hash chain per organization (chain_id = the org's id) and one platform chain
-- for records outside any organization (chain_id = the nil UUID): `hash` is SHA-256 over the
-- previous record's hash and this record's fields, so altering, removing or reordering a row
-- breaks the chain at that row (`aihub audit verify`). `audit_heads` holds each chain's last
-- sequence number and hash, which lets verification notice rows cut off the end.
--
-- No foreign keys: records outlive what they describe. Triggers refuse UPDATE and DELETE, so
-- the application cannot rewrite history; someone with write access to the file still can, and
-- the chain is what exposes it.
CREATE TABLE audit_logs (
    id          BLOB PRIMARY KEY NOT NULL,
    chain_id    BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    org_id      BLOB,
    at          INTEGER NOT NULL,
    actor_type  TEXT NOT NULL CHECK (actor_type IN ('user', 'system', 'anonymous')),
    actor_id    BLOB,
    actor_label TEXT,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    before_json TEXT,
    after_json  TEXT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  BLOB,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL,
    UNIQUE (chain_id, seq)
) STRICT;
CREATE INDEX audit_logs_by_chain_action ON audit_logs (chain_id, action, seq);
CREATE INDEX audit_logs_by_chain_actor ON audit_logs (chain_id, actor_id, seq);

CREATE TABLE audit_heads (
    chain_id BLOB PRIMARY KEY NOT NULL,
    seq      INTEGER NOT NULL,
    hash     BLOB NOT NULL
) STRICT;

CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;

CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;
