-- PendingUploadKeys and StaleUploads: a tenant's PENDING uploads across its backups (uploads_state
-- starts with backup_id and cannot serve them). PENDING rows are few, so updated_at is left out
-- of the key: every recorded part updates it, and would move the index entry. MySQL has no CREATE
-- INDEX IF NOT EXISTS; the migrator treats "duplicate key name" as "step already ran".
CREATE INDEX uploads_tenant_state ON uploads (tenant_id, state)
