-- Users, roles per campaign, API keys, console sign-in sessions and the audit log
-- (issue 16; signaling::access, signaling::audit).

-- A person who signs in to the console (argon2id PHC string) or calls the API with a key.
-- `superuser` may do everything, as the admin token does.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    superuser INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- A user's role on one campaign: `owner`, `member` (with `permissions`, a comma-separated
-- subset of view,edit,invite,listen,export,admin), `viewer` or `analyst`.
CREATE TABLE grants (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    permissions TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, campaign_id)
);
CREATE INDEX grants_campaign ON grants(campaign_id);

-- An API key acts as its user, narrowed to `permissions` (comma-separated; NULL: all the
-- user has) and `campaigns` (comma-separated ids; NULL: all the user's). Only the SHA-256 of
-- the key is kept; `prefix` (its first characters) tells keys apart in lists.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    permissions TEXT,
    campaigns TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_user ON api_keys(user_id);

-- A console sign-in: the SHA-256 of the cookie's random id, never the id.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions(user_id);

-- Append-only: who did what to which resource, from where, with what outcome. No foreign
-- keys: rows outlive the sessions, users and keys they name.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    campaign_id TEXT,
    client TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_campaign ON audit_log(campaign_id, seq);
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
