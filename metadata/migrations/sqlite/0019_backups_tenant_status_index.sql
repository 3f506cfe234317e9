-- CountTenant's open-backup index; see migrations/mysql/0019_backups_tenant_status_index.sql.
CREATE INDEX IF NOT EXISTS backups_tenant_status ON backups (tenant_id, status)
