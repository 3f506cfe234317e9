-- An object in a bucket; see migrations/mysql/0008_objects.sql. Secondary keys are UNIQUE
-- constraints that contain the primary key (see 0007_backups.sql).
CREATE TABLE IF NOT EXISTS objects (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    id         TEXT    NOT NULL,
    org_id     TEXT    NOT NULL,
    storage_id TEXT    NULL,
    backup_id  TEXT    NULL,
    object_key TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    sha256     BLOB    NOT NULL,
    etag       TEXT    NOT NULL,
    damaged    INTEGER NOT NULL CHECK (damaged IN (0, 1)),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT objects_key UNIQUE (tenant_id, object_key),
    CONSTRAINT objects_dedup UNIQUE (tenant_id, org_id, storage_id, sha256, id),
    CONSTRAINT objects_storage UNIQUE (tenant_id, storage_id, id),
    CONSTRAINT objects_backup UNIQUE (tenant_id, backup_id, id),
    FOREIGN KEY (tenant_id, storage_id) REFERENCES storages (tenant_id, id)
) STRICT
