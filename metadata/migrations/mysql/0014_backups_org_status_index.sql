-- FindBackup: an org's latest COMMITTED backup started at or before a time. backups_org_started
-- alone would scan back over every OPEN, ABORTED and DELETING row on the way (DELETING rows stay
-- for history, so they accumulate); with status in the key it is one seek. MySQL has no CREATE
-- INDEX IF NOT EXISTS; the migrator treats "duplicate key name" as "step already ran".
CREATE INDEX backups_org_status_started ON backups (tenant_id, org_id, status, started_at, id)
