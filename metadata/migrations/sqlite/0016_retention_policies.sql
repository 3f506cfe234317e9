-- A retention policy; see migrations/mysql/0016_retention_policies.sql.
CREATE TABLE IF NOT EXISTS retention_policies (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    org_id       TEXT    NOT NULL,
    keep_last    INTEGER NOT NULL,
    keep_daily   INTEGER NOT NULL,
    keep_weekly  INTEGER NOT NULL,
    keep_monthly INTEGER NOT NULL,
    keep_yearly  INTEGER NOT NULL,
    keep_within  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, org_id)
) STRICT
