// Package metadata is backupstore's catalog: the SQL database that records tenants, their
// storages (registered buckets, with sealed credentials and validation state) and backups, so the
// service knows what it wrote where. It holds no object data and never sees a plaintext secret.
//
// One Store serves both databases: MySQL (github.com/go-sql-driver/mysql) in production and
// SQLite (modernc.org/sqlite, pure Go) as the embedded default. The queries are shared; a small
// dialect covers what differs (column types in the migration files, upsert syntax, classifying
// constraint violations, the migration lock). Driver errors are translated at this boundary into
// ErrNotFound, ErrConflict, ErrReferenced and ErrInvalid. Every query on tenant data filters by
// tenant id, and another tenant's id is simply not found.
//
// Portability rules the schema follows: ids and names are VARBINARY on MySQL (TEXT with SQLite's
// default BINARY collation), so they compare case-sensitively whatever the server's default
// collation (15-character Salesforce ids differ only in case); tables are InnoDB, utf8mb4 with a
// binary collation; keys stay far below InnoDB's 3072-byte limit; timestamps are UTC unix
// microseconds in BIGINT/INTEGER columns, which both drivers read back exactly.
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
