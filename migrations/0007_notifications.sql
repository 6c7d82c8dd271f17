-- Approvers are reminded once, at half the time they have to decide (`Ledger::remind_approvers`).
ALTER TABLE requests ADD COLUMN approvers_reminded_at INTEGER;
