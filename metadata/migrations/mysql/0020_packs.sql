-- A pack object: many small file bodies in one bucket object with an authenticated index at its
-- end (docs/FORMAT.md §2.2). Phase 1: a pack is written by one PutObject and its row inserted
-- SEALED, with its blobs and files, in one transaction after the PUT (a crash in between leaves
-- an object without a row, which garbage collection owns). backup_id is the backup whose writer
-- made it (no foreign key: other backups' files may share its blobs). index_offset/index_sha256
-- let a reader fetch and check index and trailer with one ranged GET; key_id names the master
-- key the index MAC was derived from. packs_key serves garbage collection's key walk and
-- UnclaimedKeys; packs_backup finds a backup's packs.
CREATE TABLE IF NOT EXISTS packs (
    tenant_id    VARBINARY(128)  NOT NULL,
    id           VARBINARY(64)   NOT NULL,
    org_id       VARBINARY(64)   NOT NULL,
    storage_id   VARBINARY(64)   NULL,
    backup_id    VARBINARY(64)   NULL,
    object_key   VARBINARY(1024) NOT NULL,
    state        VARCHAR(16)     NOT NULL,
    size         BIGINT          NOT NULL,
    body_count   INT             NOT NULL,
    index_offset BIGINT          NOT NULL,
    index_sha256 VARBINARY(32)   NOT NULL,
    key_id       VARBINARY(32)   NOT NULL,
    damaged      BOOLEAN         NOT NULL,
    created_at   BIGINT          NOT NULL,
    sealed_at    BIGINT          NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY packs_key (tenant_id, object_key),
    KEY packs_storage (tenant_id, storage_id),
    KEY packs_backup (tenant_id, backup_id),
    CONSTRAINT packs_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT packs_storage_fk FOREIGN KEY (tenant_id, storage_id)
        REFERENCES storages (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=DYNAMIC
