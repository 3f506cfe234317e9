-- A record set's schema within a backup: the CSV header row every chunk begins with (raw bytes, as
-- long as a row may be) and the declared reference fields (JSON), as the first chunk wrote them.
CREATE TABLE IF NOT EXISTS record_sets (
    tenant_id        VARBINARY(128) NOT NULL,
    backup_id        VARBINARY(64)  NOT NULL,
    sobject          VARBINARY(255) NOT NULL,
    header           MEDIUMBLOB     NOT NULL,
    reference_fields MEDIUMBLOB     NULL,
    created_at       BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, sobject),
    CONSTRAINT record_sets_backup_fk FOREIGN KEY (tenant_id, backup_id)
        REFERENCES backups (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
