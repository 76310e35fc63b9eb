-- Accounts, organizations (with teams and roles), API keys and sessions.
-- Times are Unix milliseconds (INTEGER); ids are UUIDv7 stored as 16-byte BLOBs; booleans are 0/1.

CREATE TABLE users (
    id                BLOB PRIMARY KEY NOT NULL,
    email             TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    is_platform_admin INTEGER NOT NULL DEFAULT 0,
    disabled_at       INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

CREATE TABLE orgs (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    is_personal INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
) STRICT;

CREATE TABLE org_members (
    org_id     BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
) STRICT;
CREATE INDEX org_members_by_user ON org_members (user_id);

CREATE TABLE teams (
    id         BLOB PRIMARY KEY NOT NULL,
    org_id     BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (org_id, name)
) STRICT;

CREATE TABLE team_members (
    team_id    BLOB NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    org_id     BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) STRICT;
CREATE INDEX team_members_by_org_user ON team_members (org_id, user_id);

CREATE TABLE api_keys (
    id            BLOB PRIMARY KEY NOT NULL,
    org_id        BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    team_id       BLOB REFERENCES teams (id) ON DELETE SET NULL,
    owner_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_by    BLOB NOT NULL REFERENCES users (id),
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    key_hash      BLOB NOT NULL UNIQUE,
    models        TEXT,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    last_used_at  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_by_org ON api_keys (org_id, id);
CREATE INDEX api_keys_by_owner ON api_keys (owner_user_id);

CREATE TABLE sessions (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ip           TEXT,
    user_agent   TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
