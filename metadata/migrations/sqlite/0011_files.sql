-- A file of a backup; see migrations/mysql/0011_files.sql.
CREATE TABLE IF NOT EXISTS files (
    tenant_id    TEXT    NOT NULL,
    backup_id    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    object_id    TEXT    NOT NULL,
    upload_id    TEXT    NOT NULL,
    parent_id    TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, id),
    CONSTRAINT files_object UNIQUE (tenant_id, object_id, backup_id, id),
    FOREIGN KEY (tenant_id, backup_id) REFERENCES backups (tenant_id, id),
    FOREIGN KEY (tenant_id, object_id) REFERENCES objects (tenant_id, id)
) STRICT
