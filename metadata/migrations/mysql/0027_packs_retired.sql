-- A repack (docs/FORMAT.md §2.8) moves a pack's live bodies into a new pack and retires the old
-- one: state RETIRED, retired_at set, no blob rows left. Its object stays readable for the
-- repack grace (a reader may hold its location), then is deleted with its row. NULL for every
-- pack that is not RETIRED. MariaDB adds a nullable column in place; the migrator treats
-- "duplicate column name" as "step already ran".
ALTER TABLE packs ADD COLUMN retired_at BIGINT NULL
