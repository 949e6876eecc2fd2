-- Privacy (F10, issue 16): each campaign's policy on personal data in transcripts and its
-- retention of audio, sealed originals of changed turns, what the retention sweep did, and
-- participants' deletion requests.

-- A campaign without a row here has the defaults: keep, no delay, no originals, no
-- patterns, audio kept 90 days, deletion requests fulfilled by an admin.
CREATE TABLE campaign_privacy (
    campaign_id TEXT PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    pii_action TEXT NOT NULL DEFAULT 'keep',          -- keep | mask | redact
    pii_delay_days INTEGER NOT NULL DEFAULT 0,        -- 0: as lines are stored; N: by the sweep
    pii_keep_originals INTEGER NOT NULL DEFAULT 0,
    pii_patterns TEXT NOT NULL DEFAULT '[]',          -- JSON [{"name","regex"}]
    audio_retention_days INTEGER NOT NULL DEFAULT 90, -- 0: kept until the session is deleted
    auto_delete_requests INTEGER NOT NULL DEFAULT 0   -- 1: a participant's request deletes at once
);

-- The original text of a turn whose stored text was masked or redacted, sealed by the
-- server's TextVault (NULL: none kept).
ALTER TABLE turns ADD COLUMN original BLOB;

-- When the sweep deleted the session's recordings / applied its delayed PII policy; the
-- SHA-256 (hex) of the participant's deletion token.
ALTER TABLE sessions ADD COLUMN recordings_deleted_at INTEGER;
ALTER TABLE sessions ADD COLUMN pii_applied_at INTEGER;
ALTER TABLE sessions ADD COLUMN deletion_token_hash TEXT;
CREATE INDEX sessions_retention ON sessions(ended_at) WHERE ended_at IS NOT NULL;
CREATE UNIQUE INDEX sessions_deletion_token ON sessions(deletion_token_hash)
    WHERE deletion_token_hash IS NOT NULL;

-- Each sweep's report (JSON), newest kept for GET /v1/retention.
CREATE TABLE retention_sweeps (
    at INTEGER PRIMARY KEY,
    report TEXT NOT NULL
);

-- A participant's request to delete their session. After fulfilment only the fact remains
-- (no foreign key: the session row is gone).
CREATE TABLE deletion_requests (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    fulfilled_at INTEGER,
    fulfilled_by TEXT                                  -- admin | policy
);
CREATE INDEX deletion_requests_pending ON deletion_requests(fulfilled_at, requested_at);
