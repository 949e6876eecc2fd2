-- Optimistic versioning of lifecycle steps and an indexed timer column (issue 9).
-- `version` is bumped by every lifecycle step; a step is written only if the row still has
-- the version it was computed from (compare-and-swap), so several processes can share one
-- database without in-process locks.
ALTER TABLE sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
-- When the ticker must deliver the next Tick (unix ms, signaling::lifecycle::next_deadline);
-- NULL when no timer runs (created, ended).
ALTER TABLE sessions ADD COLUMN next_deadline INTEGER;
-- Sessions written before this column existed: due at once. The first Tick computes and
-- stores the real deadline (an early Tick changes nothing else).
UPDATE sessions SET next_deadline = 0 WHERE state IN ('created', 'in_progress', 'paused');
CREATE INDEX sessions_next_deadline ON sessions(next_deadline) WHERE next_deadline IS NOT NULL;
