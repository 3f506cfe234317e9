-- A backup; see migrations/mysql/0007_backups.sql. SQLite cannot declare a plain index inside
-- CREATE TABLE, and a step is one statement, so the secondary keys are UNIQUE constraints: each
-- contains the primary key (tenant_id, id), so declaring it unique constrains nothing more.
CREATE TABLE IF NOT EXISTS backups (
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id),
    id                 TEXT    NOT NULL,
    org_id             TEXT    NOT NULL,
    storage_id         TEXT    NULL,
    labels             BLOB    NOT NULL,
    idempotency_key    TEXT    NULL,
    status             TEXT    NOT NULL,
    damaged            INTEGER NOT NULL CHECK (damaged IN (0, 1)),
    started_at         INTEGER NOT NULL,
    committed_at       INTEGER NULL,
    record_count       INTEGER NOT NULL,
    record_chunk_count INTEGER NOT NULL,
    file_count         INTEGER NOT NULL,
    bytes_in           INTEGER NOT NULL,
    bytes_stored       INTEGER NOT NULL,
    manifest_key       TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT backups_idempotency UNIQUE (tenant_id, idempotency_key),
    CONSTRAINT backups_started UNIQUE (tenant_id, started_at, id),
    CONSTRAINT backups_org_started UNIQUE (tenant_id, org_id, started_at, id),
    CONSTRAINT backups_storage UNIQUE (tenant_id, storage_id, id),
    FOREIGN KEY (tenant_id, storage_id) REFERENCES storages (tenant_id, id)
) STRICT
