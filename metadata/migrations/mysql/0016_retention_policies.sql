-- A retention policy: which COMMITTED backups of an org to keep (restic's forget rules). org_id ''
-- is the tenant's default policy, so the primary key allows one default and one policy per org.
-- keep_within is a duration in microseconds; updated_at a UTC unix-microsecond timestamp.
CREATE TABLE IF NOT EXISTS retention_policies (
    tenant_id    VARBINARY(128) NOT NULL,
    org_id       VARBINARY(64)  NOT NULL,
    keep_last    INT            NOT NULL,
    keep_daily   INT            NOT NULL,
    keep_weekly  INT            NOT NULL,
    keep_monthly INT            NOT NULL,
    keep_yearly  INT            NOT NULL,
    keep_within  BIGINT         NOT NULL,
    updated_at   BIGINT         NOT NULL,
    PRIMARY KEY (tenant_id, org_id),
    CONSTRAINT retention_policies_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
