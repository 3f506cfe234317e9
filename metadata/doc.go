// Package metadata is backupstore's catalog: the SQL database that records tenants, their
// storages (registered buckets, with sealed credentials and validation state), backups, uploads
// and their parts, objects, files and record set chunks, so the service knows what it wrote where.
// It holds no object data and never sees a plaintext secret. It has a row per object, file and
// chunk, never per record: it grows with objects, not with an org's record count.
//
// One Store serves both databases: MySQL (github.com/go-sql-driver/mysql) in production and
// SQLite (modernc.org/sqlite, pure Go) as the embedded default. The queries are shared; a small
// dialect covers what differs (column types in the migration files, upsert syntax, classifying
// constraint violations, the migration lock, TryLock). Driver errors are translated at this
// boundary into ErrNotFound, ErrConflict, ErrReferenced and ErrInvalid. Every query on tenant data
// filters by tenant id, and another tenant's id is simply not found.
//
// Portability rules the schema follows: ids and names are VARBINARY on MySQL (TEXT with SQLite's
// default BINARY collation), so they compare case-sensitively whatever the server's default
// collation (15-character Salesforce ids differ only in case); tables are InnoDB, utf8mb4 with a
// binary collation; keys stay far below InnoDB's 3072-byte limit; timestamps are UTC unix
// microseconds in BIGINT/INTEGER columns, which both drivers read back exactly.
//
// # Ingest
//
// An upload's row is written PENDING before its first S3 call (a single PUT is recorded only
// after it, by the commit). Its generation fences streams: every write names the generation it
// was opened at (RecordPart, SetS3UploadID, FailUpload, ResetUpload, Commit*Upload) and fails with
// ErrStale once a reopen has bumped it (BumpGeneration). A commit (CommitFileUpload,
// CommitRecordsUpload) writes the objects, the file or chunk row and the upload's COMMITTED state
// in one transaction; CommitBackup refuses while uploads are PENDING and computes the backup's
// counts from the rows.
//
// Locking: an upload commit reads its backup with a shared lock (MySQL: LOCK IN SHARE MODE) and
// checks it is OPEN; SetBackupStatus and CommitBackup lock it exclusively. So once a backup has
// left OPEN no row is added to it, and CommitBackup counts every row committed before it. A
// deduplicated file (CommitFileUpload with no new object) reads, with a shared lock, a file of a
// live backup that shares the object, so that backup cannot turn DELETING (and ExclusiveObjects
// cannot report the object as its alone) before the new file is in. SQLite needs no locking reads: every
// transaction begins with BEGIN IMMEDIATE and is the only writer.
//
// Deleting a backup: mark it DELETING (or ABORTED), delete ExclusiveObjects from the bucket, then
// PurgeBackupRows, which keeps the backup row for history and deletes only objects no remaining
// row references. Foreign keys back this up: an object a file or chunk references cannot be
// deleted, nor a storage a backup or object names (ErrReferenced).
//
// # Maintenance
//
// Retention policies (PutRetentionPolicy; OrgID "" is the tenant's default) are stored, not
// interpreted: the maintenance package picks the COMMITTED backups to keep (OrgsWithBackups,
// ListBackups by org and status) and marks the others DELETING. Deleting a backup ends with
// DeleteBackupRow once PurgeBackupRows has left no row naming it; a backup that stored a file
// object another backup still shares keeps its row (ErrReferenced) until that backup is deleted
// too. Garbage collection merges ForEachObjectKey, in byte order like S3's listing, with the
// bucket's keys, sparing PendingUploadKeys; StaleUploads are the pending uploads past their TTL.
// Maintenance runs are recorded (InsertMaintenanceRun, FinishMaintenanceRun) and run under
// Store.TryLock: MySQL GET_LOCK across replicas, an in-process lock on SQLite.
//
// # Migrations
//
// The schema is a numbered list of steps embedded in the binary, migrations/<dialect>/NNNN_name.sql
// (the same numbers and names for both dialects), applied in order by Open and recorded in
// schema_migrations(version). Each step is exactly one DDL statement: MySQL commits every DDL
// statement implicitly, so a step of two could stop half-done. A step's version is recorded right
// after it succeeds (SQLite: in the same transaction); if a crash falls between the two, the next
// start re-runs the step, so steps are written to be re-runnable (IF NOT EXISTS, or an "already
// exists" MySQL error the dialect accepts as done). On MySQL, replicas starting together serialise
// on GET_LOCK('backupstore_migrate', 60); on SQLite each step runs in a BEGIN IMMEDIATE
// transaction that first checks whether it is recorded. Steps are never edited once released;
// change the schema by adding a step.
//
// The migrator is about a hundred lines on purpose: goose and golang-migrate bring many dependencies
// (drivers for databases we do not use, CLIs) and neither handles our one-dialect-per-directory,
// one-statement-per-step files better than this does.
//
// metadata must not import storage, server or any other backupstore package; it knows nothing
// of S3 or gRPC. Its conformance suite, metadatatest.Run, is run on both databases.
package metadata
