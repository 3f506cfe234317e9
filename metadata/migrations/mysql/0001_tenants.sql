-- Every row in the catalog belongs to a tenant. Ids are VARBINARY so they compare byte by byte
-- whatever the server's default collation (Debian's MariaDB: utf8mb4_general_ci, which would
-- merge ids that differ only in case).
CREATE TABLE IF NOT EXISTS tenants (
    id         VARBINARY(128) NOT NULL,
    created_at BIGINT         NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
