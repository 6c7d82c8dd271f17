-- The per-person limits without a per-person index over every request ever made: each index
-- keyed by the person takes one page of its own per new request (people's ids are random), and
-- two such indexes cost the intake about a fifth of its throughput (docs/PERFORMANCE.md).
--
-- `recent` is 1 while a request is open or less than an hour old: all that
-- `limits.open_per_person` and `limits.per_person_per_hour` ever look at. The worker's
-- housekeeping sets it to 0 once the request is closed and an hour old
-- (`Ledger::age_requests`). One partial index by person, whose entries for one person are
-- bounded by the limits themselves, serves both counts and the open-request lookup.
ALTER TABLE requests ADD COLUMN recent INTEGER NOT NULL DEFAULT 1;
UPDATE requests SET recent = 0
    WHERE state NOT IN ('requested','awaiting_approval','approved','provisioning','ready')
      AND created_at < CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 3600000;
DROP INDEX requests_by_requester;
DROP INDEX requests_open_by_user;
-- At most one open request per person, service and cluster (a second Enter is answered with
-- the first request), as the unique index it replaces kept: every open request has the same
-- last key (''), a closed one its own id. The same index serves both per-person counts and
-- the open-request lookup.
CREATE UNIQUE INDEX requests_recent_by_requester ON requests (requester_id, service, cluster,
    (CASE WHEN state IN ('requested','awaiting_approval','approved','provisioning','ready') THEN '' ELSE id END))
    WHERE recent = 1;
-- Housekeeping's way to the requests that leave the window (new ones go on its right edge).
CREATE INDEX requests_recent ON requests (created_at) WHERE recent = 1;
