-- Timers fired by one process when several share the database (issue 17): the ticker claims
-- due sessions (SessionStore::claim_due_sessions) by setting this lease; until it runs out no
-- other ticker takes the session. Every lifecycle step clears it, so the next deadline is
-- free to claim as soon as it is due. NULL: not claimed.
ALTER TABLE sessions ADD COLUMN deadline_lease_until INTEGER;
