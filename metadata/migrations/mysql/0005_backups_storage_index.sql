-- Index for the storage foreign key (InnoDB drops the implicit one it made in step 4). MySQL has no
-- CREATE INDEX IF NOT EXISTS; the migrator treats "duplicate key name" as "step already ran".
CREATE INDEX backups_storage ON backups (tenant_id, storage_id)
