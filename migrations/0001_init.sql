-- The ledger: requests, their append-only audit history, the worker's jobs and the outbox of
-- things Slack must hear. Times are Unix milliseconds (UTC).

-- One row per access request; `state` follows the state machine in ARCHITECTURE.md and only
-- changes through guarded updates (`WHERE id = ? AND state = ?`).
CREATE TABLE requests (
    id              TEXT PRIMARY KEY,           -- fc-xxxxxxxx, shown to people
    state           TEXT NOT NULL,
    requester_id    TEXT NOT NULL,              -- Slack user id
    requester_name  TEXT NOT NULL,
    team_id         TEXT NOT NULL,
    channel_id      TEXT NOT NULL,
    service         TEXT NOT NULL,
    cluster         TEXT NOT NULL,
    container       TEXT,                       -- asked-for container, or chosen at preflight
    requested_task  TEXT,                       -- a task id the person named, if any
    ttl_secs        INTEGER NOT NULL,           -- the time box, which starts when ready
    response_url    TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    ready_at        INTEGER,
    expires_at      INTEGER,
    ended_at        INTEGER,
    task_arn        TEXT,
    instance_id     TEXT,
    instance_type   TEXT,
    role_name       TEXT,
    launch          TEXT,                       -- JSON: type, market, subnet, estimated cost
    warnings        TEXT,                       -- JSON: preflight checks that warned
    end_reason      TEXT
);
CREATE INDEX requests_due ON requests (state, expires_at);
-- At most one open request per person, service and cluster (a second Enter is answered with
-- the first request); it also serves that lookup.
CREATE UNIQUE INDEX requests_open_by_user ON requests (requester_id, service, cluster)
    WHERE state IN ('requested','awaiting_approval','approved','provisioning','ready');

-- Every step of every request, in order. Append-only: updates and deletes are refused.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,                  -- Slack user id, or `worker`
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL                   -- JSON
);
CREATE INDEX audit_by_request ON audit_events (request_id, seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Work for the worker. A job is leased while it runs; a lease that runs out (a dead worker)
-- makes the job claimable again. Every job step is idempotent.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    kind        TEXT NOT NULL,                  -- provision | teardown
    run_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    last_error  TEXT,
    UNIQUE (request_id, kind)
);
CREATE INDEX jobs_due ON jobs (run_at);

-- What Slack must be told, written in the same transaction as the state change it reports.
-- Delivered in id order per request; never deleted, so nothing is lost.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    notice          TEXT NOT NULL,              -- JSON of worker::events::Notice
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (request_id, id) WHERE delivered_at IS NULL AND failed_at IS NULL;
