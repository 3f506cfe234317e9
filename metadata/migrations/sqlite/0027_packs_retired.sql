-- A retired pack's retirement time; see migrations/mysql/0027_packs_retired.sql.
ALTER TABLE packs ADD COLUMN retired_at INTEGER NULL
