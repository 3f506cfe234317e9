-- Backups (a stub); see migrations/mysql/0004_backups.sql. The storage key uses SQLite's default
-- NO ACTION, not RESTRICT: with an immediate constraint both refuse the delete, but RESTRICT is
-- run as a trigger and fails with SQLITE_CONSTRAINT_TRIGGER instead of _FOREIGNKEY.
CREATE TABLE IF NOT EXISTS backups (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    id         TEXT    NOT NULL,
    org_id     TEXT    NOT NULL,
    storage_id TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, storage_id) REFERENCES storages (tenant_id, id)
) STRICT
