-- One uploaded chunk of a record set (sObject, sequence): its data object (zstd frames) and index
-- object, record count and sizes. One row per chunk, never per record. The foreign keys keep the
-- backup and both objects alive; the object keys also index them.
CREATE TABLE IF NOT EXISTS record_chunks (
    tenant_id        VARBINARY(128) NOT NULL,
    backup_id        VARBINARY(64)  NOT NULL,
    sobject          VARBINARY(255) NOT NULL,
    seq              INT            NOT NULL,
    upload_id        VARBINARY(64)  NOT NULL,
    data_object_id   VARBINARY(64)  NOT NULL,
    index_object_id  VARBINARY(64)  NOT NULL,
    records          BIGINT         NOT NULL,
    bytes_in         BIGINT         NOT NULL,
    bytes_stored     BIGINT         NOT NULL,
    sha256           VARBINARY(32)  NOT NULL,
    reference_fields MEDIUMBLOB     NULL,
    created_at       BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, sobject, seq),
    KEY record_chunks_data (tenant_id, data_object_id),
    KEY record_chunks_index (tenant_id, index_object_id),
    CONSTRAINT record_chunks_backup_fk FOREIGN KEY (tenant_id, backup_id)
        REFERENCES backups (tenant_id, id) ON DELETE RESTRICT,
    CONSTRAINT record_chunks_data_fk FOREIGN KEY (tenant_id, data_object_id)
        REFERENCES objects (tenant_id, id) ON DELETE RESTRICT,
    CONSTRAINT record_chunks_index_fk FOREIGN KEY (tenant_id, index_object_id)
        REFERENCES objects (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
