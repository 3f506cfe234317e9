-- A pack object; see migrations/mysql/0020_packs.sql. Secondary keys are UNIQUE constraints that
-- contain the primary key (see 0007_backups.sql).
CREATE TABLE IF NOT EXISTS packs (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    id           TEXT    NOT NULL,
    org_id       TEXT    NOT NULL,
    storage_id   TEXT    NULL,
    backup_id    TEXT    NULL,
    object_key   TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    body_count   INTEGER NOT NULL,
    index_offset INTEGER NOT NULL,
    index_sha256 BLOB    NOT NULL,
    key_id       TEXT    NOT NULL,
    damaged      INTEGER NOT NULL CHECK (damaged IN (0, 1)),
    created_at   INTEGER NOT NULL,
    sealed_at    INTEGER NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT packs_key UNIQUE (tenant_id, object_key),
    CONSTRAINT packs_storage UNIQUE (tenant_id, storage_id, id),
    CONSTRAINT packs_backup UNIQUE (tenant_id, backup_id, id),
    FOREIGN KEY (tenant_id, storage_id) REFERENCES storages (tenant_id, id)
) STRICT
