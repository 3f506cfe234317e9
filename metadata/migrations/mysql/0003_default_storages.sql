-- At most one default storage per tenant, guaranteed by the primary key. The composite foreign key
-- keeps the default inside its own tenant; deleting the storage clears the default.
CREATE TABLE IF NOT EXISTS default_storages (
    tenant_id  VARBINARY(128) NOT NULL,
    storage_id VARBINARY(64)  NOT NULL,
    updated_at BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id),
    KEY default_storages_storage (tenant_id, storage_id),
    CONSTRAINT default_storages_storage_fk FOREIGN KEY (tenant_id, storage_id)
        REFERENCES storages (tenant_id, id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
