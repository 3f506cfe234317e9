-- Packed files, step 3: one file per upload id in a backup. Uploads already had one (each file
-- commit commits its upload row once); packed files are committed many to a transaction, and this
-- makes a racing retry of one upload id fail on the key instead of adding a second row.
CREATE UNIQUE INDEX files_upload ON files (tenant_id, backup_id, upload_id)
