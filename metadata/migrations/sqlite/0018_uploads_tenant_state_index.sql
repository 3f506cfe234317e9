-- PendingUploadKeys' and StaleUploads' index; see migrations/mysql/0018_uploads_tenant_state_index.sql.
CREATE INDEX IF NOT EXISTS uploads_tenant_state ON uploads (tenant_id, state)
