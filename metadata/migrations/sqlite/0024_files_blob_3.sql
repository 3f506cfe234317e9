-- Packed files, step 3: copy the files (see 0022_files_blob_1.sql).
INSERT INTO files (tenant_id, backup_id, id, object_id, upload_id, parent_id, path, name, content_type, size, sha256, created_at)
SELECT tenant_id, backup_id, id, object_id, upload_id, parent_id, path, name, content_type, size, sha256, created_at FROM files_v1
