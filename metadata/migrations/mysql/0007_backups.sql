-- A backup: one run of a worker for one org. storage_id NULL means the service-managed default
-- storage; when set, the composite foreign key keeps it inside the tenant and a storage cannot be
-- deleted while a backup names it. idempotency_key is unique per tenant when set (NULLs do not
-- collide). labels is a JSON object. The started_at keys serve ListBackups (newest first, by
-- tenant or by org) and the "as of time T" lookup; they end with id, the order's tie-break.
CREATE TABLE IF NOT EXISTS backups (
    tenant_id          VARBINARY(128)  NOT NULL,
    id                 VARBINARY(64)   NOT NULL,
    org_id             VARBINARY(64)   NOT NULL,
    storage_id         VARBINARY(64)   NULL,
    labels             BLOB            NOT NULL,
    idempotency_key    VARBINARY(255)  NULL,
    status             VARCHAR(16)     NOT NULL,
    damaged            BOOLEAN         NOT NULL,
    started_at         BIGINT          NOT NULL,
    committed_at       BIGINT          NULL,
    record_count       BIGINT          NOT NULL,
    record_chunk_count BIGINT          NOT NULL,
    file_count         BIGINT          NOT NULL,
    bytes_in           BIGINT          NOT NULL,
    bytes_stored       BIGINT          NOT NULL,
    manifest_key       VARBINARY(1024) NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY backups_idempotency (tenant_id, idempotency_key),
    KEY backups_started (tenant_id, started_at, id),
    KEY backups_org_started (tenant_id, org_id, started_at, id),
    KEY backups_storage (tenant_id, storage_id),
    CONSTRAINT backups_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT backups_storage_fk FOREIGN KEY (tenant_id, storage_id)
        REFERENCES storages (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
