-- The researcher console (issue 14): campaigns with a description, each session's summary
-- for the sessions list and the aggregates, indexes for the list's filters and a full-text
-- index of the transcript.
ALTER TABLE campaigns ADD COLUMN description TEXT NOT NULL DEFAULT '';

-- A session's summary (signaling::analytics), refreshed when its turns are stored and at
-- every state change. `drop_point` says where an abandoned session was left (consent,
-- never_started, mic_check, question:<id>, pause_expiry, pause_limit, technical, other).
ALTER TABLE sessions ADD COLUMN active_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN turn_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN word_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN engagement REAL;
ALTER TABLE sessions ADD COLUMN quality REAL;
ALTER TABLE sessions ADD COLUMN ai_latency_p50 INTEGER;
ALTER TABLE sessions ADD COLUMN ai_latency_p95 INTEGER;
ALTER TABLE sessions ADD COLUMN drop_point TEXT;
-- The histogram buckets of `quality` and `ai_latency_p50` (signaling::analytics::aggregate),
-- stored so that the aggregate groups by them in index order instead of sorting.
ALTER TABLE sessions ADD COLUMN quality_bucket INTEGER;
ALTER TABLE sessions ADD COLUMN latency_bucket INTEGER;
-- 0 until the summary was computed once: sessions from before this migration get theirs
-- in the background after the next start (SessionService::backfill_summaries).
ALTER TABLE sessions ADD COLUMN summarized INTEGER NOT NULL DEFAULT 0;

-- The list is ordered by created_at (newest first by default), within a campaign or state,
-- or by one of the summary columns (the same expressions as the store's ORDER BY), ties
-- by id.
CREATE INDEX sessions_created ON sessions(created_at, id);
CREATE INDEX sessions_campaign_created ON sessions(campaign_id, created_at, id);
CREATE INDEX sessions_state_created ON sessions(state, created_at, id);
CREATE INDEX sessions_by_started ON sessions(COALESCE(started_at, -1), id);
CREATE INDEX sessions_by_duration ON sessions(active_ms, id);
CREATE INDEX sessions_by_turns ON sessions(turn_count, id);
CREATE INDEX sessions_by_words ON sessions(word_count, id);
CREATE INDEX sessions_by_quality ON sessions(COALESCE(quality, -1), id);
-- The aggregate analytics read only this covering index, grouped in its order (one pass,
-- no sort).
CREATE INDEX sessions_aggregate ON sessions(quality_bucket, latency_bucket, drop_point,
    campaign_id, created_at, state, started_at, active_ms, quality);
CREATE INDEX sessions_unsummarized ON sessions(id) WHERE summarized = 0;
CREATE INDEX invites_campaign ON invites(campaign_id, created_at);
CREATE INDEX scripts_campaign ON scripts(campaign_id);

-- Full-text search in transcripts: an external-content FTS5 index over turns.text, kept in
-- step by triggers (deleting a session deletes its turns by cascade, which fires them).
CREATE VIRTUAL TABLE turns_fts USING fts5(text, content='turns', content_rowid='rowid');
CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns BEGIN
    INSERT INTO turns_fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER turns_fts_update AFTER UPDATE OF text ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO turns_fts(rowid, text) VALUES (new.rowid, new.text);
END;
INSERT INTO turns_fts(turns_fts) VALUES ('rebuild');
