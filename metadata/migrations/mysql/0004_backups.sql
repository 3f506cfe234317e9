-- Backups (a stub: later steps add the rest of the columns). The composite foreign key means a
-- backup can only name a storage of its own tenant, and a storage cannot be deleted while any
-- backup names it.
CREATE TABLE IF NOT EXISTS backups (
    tenant_id  VARBINARY(128) NOT NULL,
    id         VARBINARY(64)  NOT NULL,
    org_id     VARBINARY(64)  NOT NULL,
    storage_id VARBINARY(64)  NOT NULL,
    status     VARCHAR(16)    NOT NULL,
    created_at BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT backups_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT backups_storage_fk FOREIGN KEY (tenant_id, storage_id)
        REFERENCES storages (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
