-- Jobs are fenced. `generation` grows each time the same (request, kind) job is asked for
-- again; a run deletes its row only if the generation it claimed is still the row's, so work
-- asked for while it ran (End during provisioning, a second extension) runs once more instead
-- of being deleted with it. `lease_token` is drawn at each claim: renewing, finishing or
-- retrying a job proves the lease is still the caller's. `progress` is where a job that waits
-- (a bastion becoming ready) stands between two passes, so waiting holds no worker slot, and
-- `covers` the generation that work began for (a later pass must not claim to cover a request
-- made while it waited).
ALTER TABLE jobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lease_token INTEGER;
ALTER TABLE jobs ADD COLUMN progress TEXT;
ALTER TABLE jobs ADD COLUMN covers INTEGER;
