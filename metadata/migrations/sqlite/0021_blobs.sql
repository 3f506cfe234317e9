-- A body in a pack; see migrations/mysql/0021_blobs.sql.
CREATE TABLE IF NOT EXISTS blobs (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    org_id      TEXT    NOT NULL,
    storage_id  TEXT    NULL,
    pack_id     TEXT    NOT NULL,
    pack_offset INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    sha256      BLOB    NOT NULL,
    damaged     INTEGER NOT NULL CHECK (damaged IN (0, 1)),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT blobs_dedup UNIQUE (tenant_id, org_id, storage_id, sha256, id),
    CONSTRAINT blobs_pack UNIQUE (tenant_id, pack_id, pack_offset, id),
    FOREIGN KEY (tenant_id, pack_id) REFERENCES packs (tenant_id, id)
) STRICT
