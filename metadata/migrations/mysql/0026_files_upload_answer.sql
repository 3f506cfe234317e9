-- A packed file's upload has no row in uploads (docs/FORMAT.md §2.5): its file row answers a resend of
-- its upload id, QueryUploadStatus and ListUploads, and upload_answer says how that upload was
-- answered: 1 its body was stored in a pack, 2 its body was sent and shared one its pack already
-- held, 3 it shared a stored body without sending it. 0: an upload row holds the answer (a file with
-- an object, a restarted upload, and every file committed before this step). MariaDB adds a column
-- with a constant default in place (no table copy); the migrator treats "duplicate column name" as
-- "step already ran".
ALTER TABLE files ADD COLUMN upload_answer TINYINT NOT NULL DEFAULT 0
