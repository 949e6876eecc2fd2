-- The turn log (F6): every AI and participant turn of a session, on the session's media
-- timeline (ms). `seq` orders a session's turns by start (1, 2, ...).
CREATE TABLE turns (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,                  -- ai | participant
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,                      -- NULL while the turn goes on
    text TEXT NOT NULL DEFAULT '',
    words INTEGER NOT NULL DEFAULT 0,
    response_ms INTEGER,                 -- participant turns: start minus the preceding AI turn's end
    sentiment REAL,                      -- VADER compound score in [-1, 1]; NULL without text
    PRIMARY KEY (session_id, seq)
);
