-- The backups table of step 4 was a stub that only tests wrote; step 7 creates the full table in
-- its place (its storage_id becomes nullable, which an ALTER could do too, but a new table keeps
-- one readable definition). Dropping it also drops step 5's index.
DROP TABLE IF EXISTS backups
