-- Index for the storage foreign key: without it, deleting a storage scans every backup.
CREATE INDEX IF NOT EXISTS backups_storage ON backups (tenant_id, storage_id)
