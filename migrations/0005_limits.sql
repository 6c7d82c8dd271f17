-- `[limits]`: one person's requests in the last hour are counted in the intake transaction.
CREATE INDEX requests_by_requester ON requests (requester_id, created_at);
-- A request's `response_url` is a bearer capability Slack honours for 30 minutes; it is
-- blanked after that (`Ledger::forget_response_urls`), found through this index.
CREATE INDEX requests_response_url_kept ON requests (created_at) WHERE response_url != '';
