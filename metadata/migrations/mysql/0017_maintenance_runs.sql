-- A maintenance run (cleanup, verify, delete): which replica ran it, when, and how it ended.
-- ended_at is NULL while it runs; message is at most 4000 bytes (the store truncates).
-- maintenance_runs_started serves ListMaintenanceRuns (newest first, id the tie-break).
CREATE TABLE IF NOT EXISTS maintenance_runs (
    tenant_id  VARBINARY(128) NOT NULL,
    id         VARBINARY(64)  NOT NULL,
    kind       VARCHAR(16)    NOT NULL,
    replica    VARCHAR(255)   NOT NULL,
    started_at BIGINT         NOT NULL,
    ended_at   BIGINT         NULL,
    dry_run    BOOLEAN        NOT NULL,
    outcome    VARCHAR(16)    NOT NULL,
    message    TEXT           NOT NULL,
    PRIMARY KEY (tenant_id, id),
    KEY maintenance_runs_started (tenant_id, started_at, id),
    CONSTRAINT maintenance_runs_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
