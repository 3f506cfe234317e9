-- A recorded part of a multipart upload; see migrations/mysql/0010_upload_parts.sql.
CREATE TABLE IF NOT EXISTS upload_parts (
    tenant_id    TEXT    NOT NULL,
    backup_id    TEXT    NOT NULL,
    upload_id    TEXT    NOT NULL,
    part_number  INTEGER NOT NULL,
    etag         TEXT    NOT NULL,
    crc32c       INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    input_offset INTEGER NOT NULL,
    input_end    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, upload_id, part_number),
    FOREIGN KEY (tenant_id, backup_id, upload_id)
        REFERENCES uploads (tenant_id, backup_id, upload_id) ON DELETE CASCADE
) STRICT
