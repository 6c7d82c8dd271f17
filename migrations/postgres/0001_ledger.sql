-- The ledger on PostgreSQL: the same tables, columns, indexes and rules as the SQLite
-- migrations in `migrations/` (0001-0007) once all of them have run, written as one. Times are
-- Unix milliseconds (UTC) in BIGINT; yes/no columns are 0/1 in BIGINT as on SQLite (the code
-- reads both through one driver). A later change to the schema is a migration in both folders.

CREATE TABLE requests (
    id                    TEXT PRIMARY KEY,     -- fc-xxxxxxxx, shown to people
    state                 TEXT NOT NULL,
    requester_id          TEXT NOT NULL,        -- Slack user id
    requester_name        TEXT NOT NULL,
    team_id               TEXT NOT NULL,
    channel_id            TEXT NOT NULL,
    service               TEXT NOT NULL,
    cluster               TEXT NOT NULL,
    container             TEXT,
    requested_task        TEXT,
    ttl_secs              BIGINT NOT NULL,
    response_url          TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    ready_at              BIGINT,
    expires_at            BIGINT,
    ended_at              BIGINT,
    task_arn              TEXT,
    instance_id           TEXT,
    instance_type         TEXT,
    role_name             TEXT,
    launch                TEXT,                 -- JSON: type, market, subnet, estimated cost
    warnings              TEXT,                 -- JSON: preflight checks that warned
    end_reason            TEXT,
    reason                TEXT,
    break_glass           BIGINT NOT NULL DEFAULT 0,
    approvals_channel     TEXT,
    decide_by             BIGINT,
    decided_by            TEXT,
    decided_at            BIGINT,
    max_ttl_secs          BIGINT,
    reminded_at           BIGINT,
    ended_by              TEXT,
    hard_stop_at          BIGINT,
    recent                BIGINT NOT NULL DEFAULT 1,
    approvers_reminded_at BIGINT,
    told_at               BIGINT
);
CREATE INDEX requests_due ON requests (state, expires_at);
CREATE INDEX requests_decide ON requests (decide_by) WHERE state = 'awaiting_approval';
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_response_url_kept ON requests (created_at) WHERE response_url != '';
-- At most one open request per person, service and cluster (SQLite's migration 0006).
CREATE UNIQUE INDEX requests_recent_by_requester ON requests (requester_id, service, cluster,
    (CASE WHEN state IN ('requested','awaiting_approval','approved','provisioning','ready') THEN '' ELSE id END))
    WHERE recent = 1;
CREATE INDEX requests_recent ON requests (created_at) WHERE recent = 1;

-- Every step of every request, in order, hash-chained (worker::audit). Append-only.
CREATE TABLE audit_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  TEXT,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,                  -- JSON
    prev_hash   TEXT,
    hash        TEXT
);
CREATE INDEX audit_by_request ON audit_events (request_id, seq);
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Work for the workers, claimed under fenced leases (ledger::jobs).
CREATE TABLE jobs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    kind        TEXT NOT NULL,                  -- provision | teardown | reschedule
    run_at      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    last_error  TEXT,
    generation  BIGINT NOT NULL DEFAULT 0,
    lease_token BIGINT,
    progress    TEXT,
    covers      BIGINT,
    UNIQUE (request_id, kind)
);
CREATE INDEX jobs_due ON jobs (run_at);

-- The Slack messages a request owns (cards updated in place).
CREATE TABLE slack_messages (
    request_id  TEXT NOT NULL REFERENCES requests (id),
    kind        TEXT NOT NULL,                  -- requester | approval
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    PRIMARY KEY (request_id, kind)
);

-- What Slack must be told, written in the same transaction as the state change it reports.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      TEXT REFERENCES requests (id),
    notice          TEXT NOT NULL,              -- JSON of worker::events::Notice
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    failed_at       BIGINT,
    last_error      TEXT,
    via             TEXT                        -- response_url | web_api
);
CREATE INDEX outbox_pending ON outbox (request_id, id) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_next ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
