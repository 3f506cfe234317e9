-- A record set's schema within a backup; see migrations/mysql/0013_record_sets.sql.
CREATE TABLE IF NOT EXISTS record_sets (
    tenant_id        TEXT    NOT NULL,
    backup_id        TEXT    NOT NULL,
    sobject          TEXT    NOT NULL,
    header           BLOB    NOT NULL,
    reference_fields BLOB    NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, sobject),
    FOREIGN KEY (tenant_id, backup_id) REFERENCES backups (tenant_id, id)
) STRICT
