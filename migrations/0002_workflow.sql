-- The Slack workflow (#5): reasons, approvals, reminders and extensions on requests; the Slack
-- messages each request owns (so cards are updated, not re-posted); outbox rows that belong to
-- no request (denials told to the audit channel); and a hash chain over the audit history.

ALTER TABLE requests ADD COLUMN reason TEXT;
ALTER TABLE requests ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
-- Approvals: where the card goes, until when a decision is awaited, who decided and when.
ALTER TABLE requests ADD COLUMN approvals_channel TEXT;
ALTER TABLE requests ADD COLUMN decide_by INTEGER;
ALTER TABLE requests ADD COLUMN decided_by TEXT;
ALTER TABLE requests ADD COLUMN decided_at INTEGER;
-- The most the time box may grow to by extensions (the service's maximum at request time).
ALTER TABLE requests ADD COLUMN max_ttl_secs INTEGER;
ALTER TABLE requests ADD COLUMN reminded_at INTEGER;
ALTER TABLE requests ADD COLUMN ended_by TEXT;
-- Partial: only requests awaiting a decision are in it, so other writes do not pay for it.
CREATE INDEX requests_decide ON requests (decide_by) WHERE state = 'awaiting_approval';
-- history and export: newest first, from a time on.
CREATE INDEX requests_by_created ON requests (created_at);

-- A message the bot posted and later updates in place: the requester's card, the approval card.
CREATE TABLE slack_messages (
    request_id  TEXT NOT NULL REFERENCES requests (id),
    kind        TEXT NOT NULL,                  -- requester | approval
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    PRIMARY KEY (request_id, kind)
);

-- The outbox again, with request_id optional (a denial by policy has no request).
CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT REFERENCES requests (id),
    notice          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_error      TEXT,
    via             TEXT                        -- how it was delivered: response_url | web_api
);
INSERT INTO outbox_new (id, request_id, notice, created_at, attempts, next_attempt_at, delivered_at, failed_at,
    last_error, via)
    SELECT id, request_id, notice, created_at, attempts, next_attempt_at, delivered_at, failed_at, last_error,
    'response_url' FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (request_id, id) WHERE delivered_at IS NULL AND failed_at IS NULL;
-- The notifier's "when is the next row due": a lookup, however many rows wait.
CREATE INDEX outbox_next ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;

-- The chain: `hash` = SHA-256 over the previous event's hash and this event's fields (see
-- worker::audit). Rows written before this migration have neither and are reported as such.
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
