-- FilesByParent: a backup's files of given parent records, ordered by parent_id, then id (InnoDB
-- would append the primary key anyway; id is named so both dialects order the same way).
CREATE INDEX files_parent ON files (tenant_id, backup_id, parent_id, id)
