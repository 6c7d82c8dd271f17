-- The bastion's own deadline (UTC ms), fixed on the first launch attempt and reused by every
-- retry: the user data and the `expires-at` tag are then the same on each attempt, as EC2
-- requires for a repeated ClientToken (else IdempotentParameterMismatch).
ALTER TABLE requests ADD COLUMN hard_stop_at INTEGER;
