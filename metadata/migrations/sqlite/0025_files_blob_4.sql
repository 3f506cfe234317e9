-- Packed files, step 4: the old table goes, with its files_parent index.
DROP TABLE IF EXISTS files_v1
