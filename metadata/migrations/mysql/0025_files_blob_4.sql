-- Packed files, step 4: MySQL needs no fourth step (SQLite renames its rebuilt table here); the
-- table comment records the rule the columns follow.
ALTER TABLE files COMMENT = 'a file of a backup: its body is an object (object_id) or a blob in a pack (blob_id)'
