package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is everything that differs between MySQL and SQLite. The queries themselves are
// shared: both use ? placeholders, and every column type difference lives in the per-dialect
// migration files.
type dialect interface {
	// name is the driver name and the migrations/<name> directory.
	name() string
	// upsert returns an INSERT of cols into table that, when a row with the same key columns
	// exists, sets the update columns to the new values, or does nothing when update is empty.
	upsert(table string, cols, key, update []string) string
	// classify tells which constraint, if any, err violated.
	classify(err error) violation
	// migrationsTable is the DDL of the table that records applied migration steps.
	migrationsTable() string
	// lockMigrations serialises migrators across processes; unlock must be called after.
	lockMigrations(ctx context.Context, conn *sql.Conn) (unlock func(), err error)
	// transactionalDDL reports whether a DDL statement and the row recording it can commit in
	// one transaction.
	transactionalDDL() bool
	// alreadyApplied reports whether a migration step failed only because it ran before
	// (a crash between the DDL, which MySQL commits implicitly, and the recording of it).
	alreadyApplied(err error) bool
	// busy reports whether err is a lock conflict that is worth retrying.
	busy(err error) bool
	// forUpdate and forShare end a locking read: one that reads the latest committed row, not
	// the transaction's snapshot, and locks it (exclusively or shared) until the transaction
	// ends. SQLite needs neither: a transaction begins with BEGIN IMMEDIATE, so it is the only
	// writer from its first statement on.
	forUpdate() string
	forShare() string
	// straightJoin joins two tables in the order written (the left one the outer loop): the
	// liveness EXISTS of dedup lookups must probe files by their blob or object index, one row,
	// where MariaDB's optimizer may otherwise materialise every file of the tenant.
	straightJoin() string
	// tryLock takes the named lock of Store.TryLock in scope (lockScope) without waiting;
	// release is called once, and only when ok.
	tryLock(ctx context.Context, db *sql.DB, scope, name string) (release func(), ok bool, err error)
}

// violation is the kind of constraint a statement violated.
type violation int

const (
	violNone       violation = iota
	violDuplicate            // unique or primary key
	violReferenced           // a parent row is still referenced by a child (delete, update of a key)
	violMissing              // a child row names a parent that does not exist (insert, update)
	violForeignKey           // a foreign key, direction unknown (SQLite reports only that)
)

func insertSQL(table string, cols []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
}

type mysqlDialect struct{}

func (mysqlDialect) name() string { return "mysql" }

func (mysqlDialect) upsert(table string, cols, key, update []string) string {
	set := make([]string, 0, len(update))
	for _, c := range update {
		set = append(set, c+" = VALUES("+c+")")
	}
	if len(set) == 0 {
		// A no-op assignment, unlike INSERT IGNORE, which would also swallow other errors
		// (foreign keys, truncation) as warnings.
		set = append(set, key[0]+" = "+key[0])
	}
	return insertSQL(table, cols) + " ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
}

// MySQL/MariaDB server error numbers.
const (
	erTableExists      = 1050 // ER_TABLE_EXISTS_ERROR
	erDupFieldName     = 1060 // ER_DUP_FIELDNAME
	erDupKeyName       = 1061 // ER_DUP_KEYNAME
	erDupEntry         = 1062 // ER_DUP_ENTRY
	erCantDropKey      = 1091 // ER_CANT_DROP_FIELD_OR_KEY
	erRowIsReferenced  = 1451 // ER_ROW_IS_REFERENCED_2
	erNoReferencedRow  = 1452 // ER_NO_REFERENCED_ROW_2
	erRowIsReferenced1 = 1217 // ER_ROW_IS_REFERENCED
	erNoReferencedRow1 = 1216 // ER_NO_REFERENCED_ROW
	erLockWaitTimeout  = 1205 // ER_LOCK_WAIT_TIMEOUT
	erLockDeadlock     = 1213 // ER_LOCK_DEADLOCK
)

func (mysqlDialect) classify(err error) violation {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return violNone
	}
	switch me.Number {
	case erDupEntry:
		return violDuplicate
	case erRowIsReferenced, erRowIsReferenced1:
		return violReferenced
	case erNoReferencedRow, erNoReferencedRow1:
		return violMissing
	}
	return violNone
}

func (mysqlDialect) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT        NOT NULL,
    name       VARCHAR(255)  NOT NULL,
    applied_at BIGINT        NOT NULL,
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`
}

// migrateLock names the MySQL advisory lock held while migrating; its timeout is in seconds.
const (
	migrateLock        = "backupstore_migrate"
	migrateLockTimeout = 60
)

func (mysqlDialect) lockMigrations(ctx context.Context, conn *sql.Conn) (func(), error) {
	// GET_LOCK belongs to the session, so it is taken, used and released on one connection.
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", migrateLock, migrateLockTimeout).Scan(&got); err != nil {
		return nil, fmt.Errorf("GET_LOCK(%s): %w", migrateLock, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("GET_LOCK(%s): not granted within %ds", migrateLock, migrateLockTimeout)
	}
	return func() {
		// If this fails the lock goes away with the session anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_, _ = conn.ExecContext(ctx, "SELECT RELEASE_LOCK(?)", migrateLock)
	}, nil
}

func (mysqlDialect) transactionalDDL() bool { return false }

func (mysqlDialect) alreadyApplied(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case erTableExists, erDupFieldName, erDupKeyName, erCantDropKey:
		return true
	}
	return false
}

func (mysqlDialect) forUpdate() string { return " FOR UPDATE" }

// forShare uses the older spelling, which both MySQL 8 and MariaDB accept.
func (mysqlDialect) forShare() string { return " LOCK IN SHARE MODE" }

func (mysqlDialect) straightJoin() string { return "STRAIGHT_JOIN" }

func (mysqlDialect) busy(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == erLockDeadlock || me.Number == erLockWaitTimeout)
}

type sqliteDialect struct{}

func (sqliteDialect) name() string { return "sqlite" }

func (sqliteDialect) upsert(table string, cols, key, update []string) string {
	q := insertSQL(table, cols) + " ON CONFLICT (" + strings.Join(key, ", ") + ") DO "
	if len(update) == 0 {
		return q + "NOTHING"
	}
	set := make([]string, 0, len(update))
	for _, c := range update {
		set = append(set, c+" = excluded."+c)
	}
	return q + "UPDATE SET " + strings.Join(set, ", ")
}

func (sqliteDialect) classify(err error) violation {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return violNone
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return violDuplicate
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return violForeignKey
	}
	return violNone
}

func (sqliteDialect) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT`
}

// lockMigrations is a no-op: each step runs in a BEGIN IMMEDIATE transaction (the DSN sets
// _txlock=immediate) that first checks whether the step is recorded, and SQLite admits one
// writer at a time, across processes too.
func (sqliteDialect) lockMigrations(context.Context, *sql.Conn) (func(), error) {
	return func() {}, nil
}

func (sqliteDialect) transactionalDDL() bool { return true }

// alreadyApplied: SQLite runs a step and records its version in one transaction, but a step
// that only adds a column (ALTER TABLE … ADD COLUMN has no IF NOT EXISTS) is also safe to run
// again over a schema that has it (a schema_migrations row lost or removed by hand).
func (sqliteDialect) alreadyApplied(err error) bool {
	return strings.Contains(err.Error(), "duplicate column name: ")
}

func (sqliteDialect) forUpdate() string { return "" }

func (sqliteDialect) forShare() string { return "" }

func (sqliteDialect) straightJoin() string { return "CROSS JOIN" }

func (sqliteDialect) busy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}
