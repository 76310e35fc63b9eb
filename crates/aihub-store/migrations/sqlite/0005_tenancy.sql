-- Tenancy: a member's model allow-list, and e-mail invitations into organizations.

-- The models a member may use in the organization, as a JSON array; NULL means every model.
-- Narrowing it narrows the member's own keys in the same transaction.
ALTER TABLE org_members ADD COLUMN models TEXT;

-- One row per invitation. Only the SHA-256 of its token is stored; the token itself is in the
-- e-mail. `status` is the outcome; a pending invitation past `expires_at` is expired. At most one
-- pending invitation per organization and address (the partial unique index): to invite the
-- address again, resend or revoke that one.
CREATE TABLE org_invitations (
    id         BLOB PRIMARY KEY NOT NULL,
    org_id     BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    token_hash BLOB NOT NULL UNIQUE,
    invited_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'declined', 'revoked')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    closed_at  INTEGER
) STRICT;
CREATE UNIQUE INDEX org_invitations_pending ON org_invitations (org_id, email)
    WHERE status = 'pending';
CREATE INDEX org_invitations_by_org ON org_invitations (org_id, id);
CREATE INDEX org_invitations_by_email ON org_invitations (email, status);
