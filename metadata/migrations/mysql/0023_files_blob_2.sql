-- Packed files, step 2: the blob column, files_blob (a blob's files, for dedup liveness and purge;
-- it also serves the foreign key), and the foreign key that keeps a file's blob alive. One ALTER,
-- so a re-run after a crash fails as a whole on the duplicate column, which the migrator knows
-- (a separate ADD CONSTRAINT would fail on MariaDB with an error it cannot tell apart).
ALTER TABLE files ADD COLUMN blob_id VARBINARY(64) NULL,
    ADD KEY files_blob (tenant_id, blob_id),
    ADD CONSTRAINT files_blob_fk FOREIGN KEY (tenant_id, blob_id) REFERENCES blobs (tenant_id, id) ON DELETE RESTRICT
