-- Earshot's embedded schema. Times are unix milliseconds (INTEGER).
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- A script is what the interviewer does: the built-in interviewer's prompts, or an external agent.
CREATE TABLE scripts (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    definition TEXT NOT NULL,            -- JSON: {"prompts":[...]} or {"agent":{...}}
    recording_enabled INTEGER NOT NULL DEFAULT 1,
    noise_suppression INTEGER NOT NULL DEFAULT 1,
    quality TEXT NOT NULL DEFAULT 'high',
    created_at INTEGER NOT NULL
);

CREATE TABLE invites (
    token TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    script_id TEXT NOT NULL REFERENCES scripts(id),
    metadata TEXT NOT NULL DEFAULT '{}', -- JSON object of custom URL parameters
    created_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    invite_token TEXT NOT NULL REFERENCES invites(token),
    campaign_id TEXT NOT NULL,
    script_id TEXT NOT NULL,
    state TEXT NOT NULL,
    lifecycle TEXT NOT NULL,             -- JSON of signaling::lifecycle::Lifecycle
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    end_reason TEXT,
    drop_off TEXT,
    user_agent TEXT,
    ip TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_invite ON sessions(invite_token);
CREATE INDEX sessions_state ON sessions(state);

-- Every state change with its time and cause.
CREATE TABLE session_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
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
    duration_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, track, format)
);
