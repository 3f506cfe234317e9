-- FilesByParent's index; see migrations/mysql/0015_files_parent_index.sql. (An SQLite index holds
-- the rowid, not the primary key, so id must be named for the order to come from the index.)
CREATE INDEX IF NOT EXISTS files_parent ON files (tenant_id, backup_id, parent_id, id)
