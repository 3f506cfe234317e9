-- Packed files (steps 0022-0025; see migrations/mysql/0022_files_blob_1.sql): SQLite cannot make
-- object_id nullable in place, so the table is rebuilt: rename the old one to files_v1, create
-- the new one, copy, drop files_v1 (the last step is then re-runnable as it is). Nothing
-- references files, so the rename changes no other table. Step 1: rename.
ALTER TABLE files RENAME TO files_v1
