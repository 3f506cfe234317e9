-- An object in a bucket: a record set chunk's data or index, a file body, a manifest. storage_id
-- NULL means the service-managed default storage. backup_id is the backup that stored it (no
-- foreign key: a file object outlives the backup that first stored it while later backups still
-- reference it). object_key is unique per tenant (keys embed the service's own ids; two rows for
-- one key would let deleting one destroy the other's data); 128 + 1024 bytes is within InnoDB's
-- 3072-byte key limit, which holds for the DYNAMIC row format. objects_dedup serves
-- FindFileObject; objects_backup finds a backup's own objects (manifest, first-stored files).
CREATE TABLE IF NOT EXISTS objects (
    tenant_id  VARBINARY(128)  NOT NULL,
    id         VARBINARY(64)   NOT NULL,
    org_id     VARBINARY(64)   NOT NULL,
    storage_id VARBINARY(64)   NULL,
    backup_id  VARBINARY(64)   NULL,
    object_key VARBINARY(1024) NOT NULL,
    kind       VARCHAR(16)     NOT NULL,
    size       BIGINT          NOT NULL,
    sha256     VARBINARY(32)   NOT NULL,
    etag       VARCHAR(255)    NOT NULL,
    damaged    BOOLEAN         NOT NULL,
    created_at BIGINT          NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY objects_key (tenant_id, object_key),
    KEY objects_dedup (tenant_id, org_id, storage_id, sha256),
    KEY objects_storage (tenant_id, storage_id),
    KEY objects_backup (tenant_id, backup_id),
    CONSTRAINT objects_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT objects_storage_fk FOREIGN KEY (tenant_id, storage_id)
        REFERENCES storages (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=DYNAMIC
