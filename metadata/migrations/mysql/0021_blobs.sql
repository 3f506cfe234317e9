-- A body in a pack: where it is (pack, offset, size) and its SHA-256. files.blob_id points here,
-- never at the pack, so moving a body (repack, erasure) updates one row, not every file sharing
-- it. Every body of a pack has a row (the index can be rebuilt from them). blobs_dedup serves
-- FindBlobs (the dedup lookup, like objects_dedup); blobs_pack finds a pack's bodies in order and
-- indexes the pack foreign key.
CREATE TABLE IF NOT EXISTS blobs (
    tenant_id   VARBINARY(128) NOT NULL,
    id          VARBINARY(64)  NOT NULL,
    org_id      VARBINARY(64)  NOT NULL,
    storage_id  VARBINARY(64)  NULL,
    pack_id     VARBINARY(64)  NOT NULL,
    pack_offset BIGINT         NOT NULL,
    size        BIGINT         NOT NULL,
    sha256      VARBINARY(32)  NOT NULL,
    damaged     BOOLEAN        NOT NULL,
    created_at  BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, id),
    KEY blobs_dedup (tenant_id, org_id, storage_id, sha256),
    KEY blobs_pack (tenant_id, pack_id, pack_offset),
    CONSTRAINT blobs_pack_fk FOREIGN KEY (tenant_id, pack_id)
        REFERENCES packs (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
