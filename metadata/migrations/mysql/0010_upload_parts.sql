-- A recorded part of a multipart upload: its ETag and CRC32C (for CompleteMultipartUpload), its
-- stored size and the input bytes it covers. A part written again (same number) replaces the row.
-- Parts belong to their upload and go with it.
CREATE TABLE IF NOT EXISTS upload_parts (
    tenant_id    VARBINARY(128) NOT NULL,
    backup_id    VARBINARY(64)  NOT NULL,
    upload_id    VARBINARY(64)  NOT NULL,
    part_number  INT            NOT NULL,
    etag         VARCHAR(255)   NOT NULL,
    crc32c       BIGINT         NOT NULL,
    size         BIGINT         NOT NULL,
    input_offset BIGINT         NOT NULL,
    input_end    BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, upload_id, part_number),
    CONSTRAINT upload_parts_upload_fk FOREIGN KEY (tenant_id, backup_id, upload_id)
        REFERENCES uploads (tenant_id, backup_id, upload_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
