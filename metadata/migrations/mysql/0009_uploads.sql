-- An upload stream's state, written PENDING before its first S3 call (DESIGN.md, write protocol).
-- upload_id is the client's handle, never part of an object key. generation fences streams: a
-- write names the generation it was opened at and fails once a reopen has bumped it. object_id and
-- object_key are where the data goes (new ones on every reset); s3_upload_id is '' until the
-- multipart upload exists. Records uploads fill sobject/seq, file uploads parent_id..declared_*.
-- committed_size and stored_size are the input and stored bytes covered by recorded parts, and
-- hash_state the marshalled SHA-256 state at committed_size. uploads_state serves ListUploads and
-- PendingUploads by state (InnoDB appends the primary key, so it is ordered by upload_id).
CREATE TABLE IF NOT EXISTS uploads (
    tenant_id        VARBINARY(128)  NOT NULL,
    backup_id        VARBINARY(64)   NOT NULL,
    upload_id        VARBINARY(64)   NOT NULL,
    kind             VARCHAR(16)     NOT NULL,
    state            VARCHAR(16)     NOT NULL,
    generation       BIGINT          NOT NULL,
    object_id        VARBINARY(64)   NOT NULL,
    object_key       VARBINARY(1024) NOT NULL,
    s3_upload_id     VARBINARY(1024) NOT NULL,
    part_size        BIGINT          NOT NULL,
    sobject          VARBINARY(255)  NOT NULL,
    seq              INT             NOT NULL,
    parent_id        VARBINARY(64)   NOT NULL,
    path             VARBINARY(4096) NOT NULL,
    name             VARBINARY(1024) NOT NULL,
    content_type     VARCHAR(255)    NOT NULL,
    declared_size    BIGINT          NOT NULL,
    declared_sha256  VARCHAR(64)     NOT NULL,
    reference_fields MEDIUMBLOB      NULL,
    committed_size   BIGINT          NOT NULL,
    stored_size      BIGINT          NOT NULL,
    hash_state       BLOB            NULL,
    error_message    TEXT            NOT NULL,
    result           MEDIUMBLOB      NULL,
    created_at       BIGINT          NOT NULL,
    updated_at       BIGINT          NOT NULL,
    PRIMARY KEY (tenant_id, backup_id, upload_id),
    KEY uploads_state (tenant_id, backup_id, state),
    CONSTRAINT uploads_backup_fk FOREIGN KEY (tenant_id, backup_id)
        REFERENCES backups (tenant_id, id) ON DELETE RESTRICT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
