-- A maintenance run; see migrations/mysql/0017_maintenance_runs.sql. The secondary key is a UNIQUE
-- constraint that contains the primary key (see 0007_backups.sql).
CREATE TABLE IF NOT EXISTS maintenance_runs (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    id         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    replica    TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER NULL,
    dry_run    INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    outcome    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT maintenance_runs_started UNIQUE (tenant_id, started_at, id)
) STRICT
