-- Webhooks (F9, issue 15): endpoints, the outbox of events and their deliveries with every
-- attempt. An event is written in the same transaction as the state change that causes it,
-- with one delivery per endpoint that wants it, so a crash loses none (at least once).

-- Where events go. `events` is a JSON array of event types; `campaign_id` NULL means every
-- campaign (no foreign key: campaigns are managed by the campaigns work, which may add one).
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,                -- whsec_<base64 of the HMAC key>
    events TEXT NOT NULL,
    campaign_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_campaign ON webhook_endpoints(campaign_id);

-- The outbox: one row per event (its id is the `webhook-id` of every delivery of it).
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    session_id TEXT,
    campaign_id TEXT,
    payload TEXT NOT NULL,               -- the JSON body sent
    created_at INTEGER NOT NULL
);

-- One event to one endpoint. `next_attempt_at` is when the worker tries next (NULL once
-- delivered or given up); a claimed delivery is pushed a lease ahead, so an attempt cut off by
-- a crash is made again after the restart.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    status TEXT NOT NULL,                -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    retry_since INTEGER NOT NULL,        -- retries run [webhooks] retry_secs from here
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);

-- Every attempt: HTTP status (NULL without a response), time to the response, error.
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    status_code INTEGER,
    response_ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id);
