-- Every row in the catalog belongs to a tenant. TEXT compares with the BINARY collation
-- (case-sensitive) unless told otherwise; STRICT makes SQLite enforce the declared types.
CREATE TABLE IF NOT EXISTS tenants (
    id         TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT
