-- A tenant's registered bucket. The primary key starts with tenant_id: rows cluster by tenant and
-- ids are unique per tenant, so one tenant cannot probe for another's ids. Names are VARBINARY
-- (case-sensitive, like ids). Timestamps are UTC unix microseconds.
CREATE TABLE IF NOT EXISTS storages (
    tenant_id            VARBINARY(128) NOT NULL,
    id                   VARBINARY(64)  NOT NULL,
    name                 VARBINARY(255) NOT NULL,
    region               VARCHAR(64)    NOT NULL,
    bucket               VARCHAR(255)   NOT NULL,
    access_key_id        VARCHAR(255)   NOT NULL,
    secret_ciphertext    BLOB           NOT NULL,
    secret_key_id        VARCHAR(255)   NOT NULL,
    endpoint             VARCHAR(2048)  NOT NULL,
    key_prefix           VARCHAR(1024)  NOT NULL,
    kms_key_id           VARCHAR(2048)  NOT NULL,
    path_style           BOOLEAN        NOT NULL,
    status               VARCHAR(32)    NOT NULL,
    status_message       TEXT           NOT NULL,
    validated_at         BIGINT         NULL,
    consecutive_failures INT            NOT NULL,
    abort_denied         BOOLEAN        NOT NULL,
    report               MEDIUMBLOB     NULL,
    created_at           BIGINT         NOT NULL,
    updated_at           BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY storages_tenant_name (tenant_id, name),
    CONSTRAINT storages_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
