-- FindBackup's index; see migrations/mysql/0014_backups_org_status_index.sql.
CREATE INDEX IF NOT EXISTS backups_org_status_started ON backups (tenant_id, org_id, status, started_at, id)
