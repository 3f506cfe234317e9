-- Packed files (steps 0022-0025): a file's body is an object (object_id) or a blob in a pack
-- (blob_id), exactly one of them. Step 1: object_id becomes nullable (re-runnable as it is).
-- SQLite cannot change a column, so its steps 0022-0025 rebuild the table instead.
ALTER TABLE files MODIFY object_id VARBINARY(64) NULL
