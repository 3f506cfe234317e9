-- Packed files, step 2: the new table (see 0022_files_blob_1.sql). files_upload is one file per
-- upload id (migrations/mysql/0024_files_blob_3.sql); files_parent and files_blob are UNIQUE
-- constraints containing the primary key (see 0007_backups.sql); a NULL object_id or blob_id is
-- not checked against its foreign key.
CREATE TABLE IF NOT EXISTS files (
    tenant_id    TEXT    NOT NULL,
    backup_id    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    object_id    TEXT    NULL,
    upload_id    TEXT    NOT NULL,
    parent_id    TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    blob_id      TEXT    NULL,
    PRIMARY KEY (tenant_id, backup_id, id),
    CONSTRAINT files_object UNIQUE (tenant_id, object_id, backup_id, id),
    CONSTRAINT files_parent UNIQUE (tenant_id, backup_id, parent_id, id),
    CONSTRAINT files_blob UNIQUE (tenant_id, blob_id, backup_id, id),
    CONSTRAINT files_upload UNIQUE (tenant_id, backup_id, upload_id),
    FOREIGN KEY (tenant_id, backup_id) REFERENCES backups (tenant_id, id),
    FOREIGN KEY (tenant_id, object_id) REFERENCES objects (tenant_id, id),
    FOREIGN KEY (tenant_id, blob_id) REFERENCES blobs (tenant_id, id)
) STRICT
