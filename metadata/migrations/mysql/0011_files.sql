-- A file of a backup: its parent record, path, name and content type, pointing at the object that
-- holds its body (possibly one an earlier backup stored: deduplication). The foreign keys keep a
-- file's backup and object alive; files_object finds an object's files (dedup liveness, exclusive
-- objects, purge) and indexes the object foreign key.
CREATE TABLE IF NOT EXISTS files (
    tenant_id    VARBINARY(128)  NOT NULL,
    backup_id    VARBINARY(64)   NOT NULL,
    id           VARBINARY(64)   NOT NULL,
    object_id    VARBINARY(64)   NOT NULL,
    upload_id    VARBINARY(64)   NOT NULL,
    parent_id    VARBINARY(64)   NOT NULL,
    path         VARBINARY(4096) NOT NULL,
    name         VARBINARY(1024) NOT NULL,
    content_type VARCHAR(255)    NOT NULL,
    size         BIGINT          NOT NULL,
    sha256       VARBINARY(32)   NOT NULL,
    created_at   BIGINT          NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, id),
    KEY files_object (tenant_id, object_id),
    CONSTRAINT files_backup_fk FOREIGN KEY (tenant_id, backup_id)
        REFERENCES backups (tenant_id, id) ON DELETE RESTRICT,
    CONSTRAINT files_object_fk FOREIGN KEY (tenant_id, object_id)
        REFERENCES objects (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
