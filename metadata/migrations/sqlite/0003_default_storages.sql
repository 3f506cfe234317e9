-- At most one default storage per tenant; see migrations/mysql/0003_default_storages.sql.
CREATE TABLE IF NOT EXISTS default_storages (
    tenant_id  TEXT    NOT NULL PRIMARY KEY,
    storage_id TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, storage_id) REFERENCES storages (tenant_id, id) ON DELETE CASCADE
) STRICT
