-- CountTenant's open-backup quota check runs on every CreateBackup: without status in a key it
-- reads every backup row of the tenant (DELETING rows stay for history, so they accumulate); with
-- it, it counts only the OPEN entries. MySQL has no CREATE INDEX IF NOT EXISTS; the migrator
-- treats "duplicate key name" as "step already ran".
CREATE INDEX backups_tenant_status ON backups (tenant_id, status)
