-- Approvers are reminded once, at half the time they have to decide (`Ledger::remind_approvers`).
ALTER TABLE requests ADD COLUMN approvers_reminded_at INTEGER;
-- When the requester was told their bastion is ready (the direct message delivered): the time
-- box starts then, not at `ready_at` (`Ledger::told_ready`). NULL while not told; a request
-- never told within `worker.untold_limit` is ended unused (end_reason `never_told`).
ALTER TABLE requests ADD COLUMN told_at INTEGER;
-- Requests already ready before this migration were told when they became ready.
UPDATE requests SET told_at = ready_at WHERE ready_at IS NOT NULL;
