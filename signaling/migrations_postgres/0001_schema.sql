-- Earshot's PostgreSQL schema: the end state of the SQLite migrations 0001-0009
-- (signaling/migrations/), written fresh (no PostgreSQL deployment predates it). Times are
-- unix milliseconds (BIGINT); every integer is BIGINT (Rust i64), every flag BOOLEAN. Where
-- SQLite reads its implicit `rowid` (insertion order), a table has an identity column.

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- A script is what the interviewer does: the built-in interviewer's prompts, or an external agent.
CREATE TABLE scripts (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    definition TEXT NOT NULL,            -- JSON: {"prompts":[...]} or {"agent":{...}}
    recording_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    noise_suppression BOOLEAN NOT NULL DEFAULT TRUE,
    quality TEXT NOT NULL DEFAULT 'high',
    created_at BIGINT NOT NULL
);
CREATE INDEX scripts_campaign ON scripts(campaign_id);

CREATE TABLE invites (
    token TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    script_id TEXT NOT NULL REFERENCES scripts(id),
    metadata TEXT NOT NULL DEFAULT '{}', -- JSON object of custom URL parameters
    created_at BIGINT NOT NULL
);
CREATE INDEX invites_campaign ON invites(campaign_id, created_at);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    -- Insertion order (SQLite's rowid): ties of an invite's sessions created the same ms.
    row_seq BIGINT GENERATED ALWAYS AS IDENTITY,
    invite_token TEXT NOT NULL REFERENCES invites(token),
    campaign_id TEXT NOT NULL,
    script_id TEXT NOT NULL,
    state TEXT NOT NULL,
    lifecycle TEXT NOT NULL,             -- JSON of signaling::lifecycle::Lifecycle
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    end_reason TEXT,
    drop_off TEXT,
    user_agent TEXT,
    ip TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    -- Bumped by every lifecycle step (compare-and-swap writes; see store/mod.rs).
    version BIGINT NOT NULL DEFAULT 0,
    -- When the ticker must deliver the next Tick; NULL when no timer runs.
    next_deadline BIGINT,
    -- Until when a node's ticker holds the due deadline (claim_due_sessions); NULL: free.
    deadline_lease_until BIGINT,
    -- The session's analytics summary (signaling::analytics).
    active_ms BIGINT NOT NULL DEFAULT 0,
    turn_count BIGINT NOT NULL DEFAULT 0,
    word_count BIGINT NOT NULL DEFAULT 0,
    engagement DOUBLE PRECISION,
    quality DOUBLE PRECISION,
    ai_latency_p50 BIGINT,
    ai_latency_p95 BIGINT,
    drop_point TEXT,
    quality_bucket BIGINT,
    latency_bucket BIGINT,
    summarized BOOLEAN NOT NULL DEFAULT FALSE,
    -- Privacy (F10): when the sweep deleted recordings / applied the delayed PII policy; the
    -- SHA-256 (hex) of the participant's deletion token.
    recordings_deleted_at BIGINT,
    pii_applied_at BIGINT,
    deletion_token_hash TEXT
);
CREATE INDEX sessions_invite ON sessions(invite_token, created_at, row_seq);
CREATE INDEX sessions_state ON sessions(state);
CREATE INDEX sessions_next_deadline ON sessions(next_deadline) WHERE next_deadline IS NOT NULL;
CREATE INDEX sessions_created ON sessions(created_at, id);
CREATE INDEX sessions_campaign_created ON sessions(campaign_id, created_at, id);
CREATE INDEX sessions_state_created ON sessions(state, created_at, id);
CREATE INDEX sessions_by_started ON sessions((COALESCE(started_at, -1)), id);
CREATE INDEX sessions_by_duration ON sessions(active_ms, id);
CREATE INDEX sessions_by_turns ON sessions(turn_count, id);
CREATE INDEX sessions_by_words ON sessions(word_count, id);
CREATE INDEX sessions_by_quality ON sessions((COALESCE(quality, -1)), id);
CREATE INDEX sessions_aggregate ON sessions(quality_bucket, latency_bucket, drop_point,
    campaign_id, created_at, state, started_at, active_ms, quality);
CREATE INDEX sessions_unsummarized ON sessions(id) WHERE NOT summarized;
CREATE INDEX sessions_retention ON sessions(ended_at) WHERE ended_at IS NOT NULL;
CREATE UNIQUE INDEX sessions_deletion_token ON sessions(deletion_token_hash)
    WHERE deletion_token_hash IS NOT NULL;

-- Every state change with its time and cause.
CREATE TABLE session_transitions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    cause TEXT NOT NULL
);
CREATE INDEX transitions_session ON session_transitions(session_id);

CREATE TABLE recordings (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    track TEXT NOT NULL,                 -- participant | ai | mix
    format TEXT NOT NULL,                -- wav | mp3
    path TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, track, format)
);

-- The turn log (F6). `text_search` is the full-text index of the transcript: the 'simple'
-- configuration lowercases and does not stem, as SQLite's FTS5 unicode61 tokenizer does;
-- words are matched as prefixes (`word:*`).
CREATE TABLE turns (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    role TEXT NOT NULL,                  -- ai | participant
    start_ms BIGINT NOT NULL,
    end_ms BIGINT,
    text TEXT NOT NULL DEFAULT '',
    words BIGINT NOT NULL DEFAULT 0,
    response_ms BIGINT,
    sentiment DOUBLE PRECISION,
    original BYTEA,                      -- sealed original of a masked/redacted turn
    text_search TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX turns_text_search ON turns USING GIN (text_search);

-- Silent listen-ins (F7).
CREATE TABLE monitors (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    started_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX monitors_session ON monitors(session_id);

-- Webhooks (F9): endpoints, the outbox of events, deliveries and every attempt.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,                -- JSON array of event types
    campaign_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_campaign ON webhook_endpoints(campaign_id);

CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    session_id TEXT,
    campaign_id TEXT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    row_seq BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    status TEXT NOT NULL,                -- pending | delivered | failed
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    retry_since BIGINT NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    status_code BIGINT,
    response_ms BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id);

-- Privacy (F10): each campaign's policy, the sweeps' reports, deletion requests.
CREATE TABLE campaign_privacy (
    campaign_id TEXT PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    pii_action TEXT NOT NULL DEFAULT 'keep',
    pii_delay_days BIGINT NOT NULL DEFAULT 0,
    pii_keep_originals BOOLEAN NOT NULL DEFAULT FALSE,
    pii_patterns TEXT NOT NULL DEFAULT '[]',
    audio_retention_days BIGINT NOT NULL DEFAULT 90,
    auto_delete_requests BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE retention_sweeps (
    at BIGINT PRIMARY KEY,
    report TEXT NOT NULL
);

CREATE TABLE deletion_requests (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    fulfilled_at BIGINT,
    fulfilled_by TEXT
);
CREATE INDEX deletion_requests_pending ON deletion_requests(fulfilled_at, requested_at);

-- Users, grants, API keys, console sign-ins and the audit log (F10). Emails are unique
-- without regard to case (SQLite: COLLATE NOCASE).
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    superuser BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users(lower(email));

CREATE TABLE grants (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    permissions TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, campaign_id)
);
CREATE INDEX grants_campaign ON grants(campaign_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    permissions TEXT,
    campaigns TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions(user_id);

-- Append-only: triggers refuse UPDATE and DELETE (and TRUNCATE).
CREATE TABLE audit_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    campaign_id TEXT,
    client TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_campaign ON audit_log(campaign_id, seq);
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
