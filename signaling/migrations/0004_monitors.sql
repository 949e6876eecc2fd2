-- Silent listen-ins (F7, issue 11): every time a QA monitor listened to a session's live
-- audio over WHEP, from when to when. `ended_at` is NULL while the monitor listens (and for
-- a listen-in cut off by a killed process until the next start closes it).
CREATE TABLE monitors (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    started_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX monitors_session ON monitors(session_id);
