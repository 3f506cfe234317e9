-- One uploaded chunk of a record set; see migrations/mysql/0012_record_chunks.sql.
CREATE TABLE IF NOT EXISTS record_chunks (
    tenant_id        TEXT    NOT NULL,
    backup_id        TEXT    NOT NULL,
    sobject          TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    upload_id        TEXT    NOT NULL,
    data_object_id   TEXT    NOT NULL,
    index_object_id  TEXT    NOT NULL,
    records          INTEGER NOT NULL,
    bytes_in         INTEGER NOT NULL,
    bytes_stored     INTEGER NOT NULL,
    sha256           BLOB    NOT NULL,
    reference_fields BLOB    NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, sobject, seq),
    CONSTRAINT record_chunks_data UNIQUE (tenant_id, data_object_id, backup_id, sobject, seq),
    CONSTRAINT record_chunks_index UNIQUE (tenant_id, index_object_id, backup_id, sobject, seq),
    FOREIGN KEY (tenant_id, backup_id) REFERENCES backups (tenant_id, id),
    FOREIGN KEY (tenant_id, data_object_id) REFERENCES objects (tenant_id, id),
    FOREIGN KEY (tenant_id, index_object_id) REFERENCES objects (tenant_id, id)
) STRICT
