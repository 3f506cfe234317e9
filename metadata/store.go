package metadata

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors callers act on. Driver errors are translated into these at the boundary; test with
// errors.Is.
var (
	// ErrNotFound: no such row for this tenant (another tenant's ids are not found either), or an
	// insert named a parent row (tenant, storage) that does not exist.
	ErrNotFound = errors.New("metadata: not found")
	// ErrConflict: a row with the same unique key exists (storage name within a tenant, id,
	// object key, record chunk), or a row is not in the state the call needs (a backup that is
	// not OPEN, a status compare-and-set that lost, an upload already committed).
	ErrConflict = errors.New("metadata: already exists")
	// ErrReferenced: the row cannot be deleted while other rows reference it (a storage that
	// backups or objects still name).
	ErrReferenced = errors.New("metadata: still referenced")
	// ErrInvalid: an argument the store cannot use (empty id, malformed page token).
	ErrInvalid = errors.New("metadata: invalid argument")
	// ErrStale: a write fenced by an upload generation that is no longer current (the upload
	// was reopened, which bumps it), or by an upload that is no longer PENDING.
	ErrStale = errors.New("metadata: stale generation")
	// ErrUnavailable: the catalog could not be reached, or the connection broke mid-call
	// (network error, server restart, failover), or a transaction kept losing deadlocks —
	// worth retrying. After a write that failed so,
	// its outcome is unknown: it may have committed.
	ErrUnavailable = errors.New("metadata: catalog unavailable")
)

// unreachable reports whether err says the connection to the catalog failed, not the SQL.
func unreachable(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &oe) || errors.As(err, &ne) || errors.Is(err, sql.ErrConnDone)
}

// releaseTimeout bounds cleanups that run on a detached context (rollback, lock release).
const releaseTimeout = 10 * time.Second

// sqliteBusyTimeout is how long (ms) an SQLite statement waits for another process's write lock.
const sqliteBusyTimeout = 10000

// Store is the catalog. It is safe for concurrent use. Its catalog methods (CreateStorage,
// GetStorage, …) each run in their own transaction when they need more than one statement; use
// InTx to group several into one.
type Store struct {
	catalog
	lockScope string // TryLock's namespace (see lockScope)
}

// Tx is a transaction begun by Store.InTx. It has the same catalog methods as Store, run inside
// the transaction. It is not safe for concurrent use and is valid only until fn returns.
type Tx struct {
	catalog
}

// MaxOpenConns bounds a MySQL catalog's connections per process.
const MaxOpenConns = 64

// Open connects to the catalog and applies any pending schema migrations.
//
// driver "mysql": dsn is a go-sql-driver/mysql DSN that must name a database. Open forces
// parseTime=true, multiStatements off and clientFoundRows on (so an update that changes nothing
// still counts its row), and sets sql_mode=TRADITIONAL unless the DSN sets sql_mode.
//
// driver "sqlite": dsn is a file name or file: URI for modernc.org/sqlite. Open adds foreign keys
// on, WAL (synchronous stays FULL), a busy timeout and BEGIN IMMEDIATE transactions, and uses one
// connection: SQLite admits one writer at a time, and one connection means no SQLITE_BUSY inside
// the process and no lock upgrades between transactions. Reads wait behind writes, which an
// embedded dev catalog can afford.
func Open(ctx context.Context, driver, dsn string) (*Store, error) {
	var (
		d   dialect
		err error
	)
	switch driver {
	case "mysql":
		d = mysqlDialect{}
		dsn, err = mysqlDSN(dsn)
	case "sqlite":
		d = sqliteDialect{}
		dsn = sqliteDSN(dsn)
	default:
		err = fmt.Errorf("%w: unknown driver %q (want mysql or sqlite)", ErrInvalid, driver)
	}
	if err != nil {
		return nil, fmt.Errorf("metadata.Open: %w", err)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("metadata.Open: %w", err)
	}
	if driver == "sqlite" {
		db.SetMaxOpenConns(1)
	} else {
		db.SetConnMaxLifetime(5 * time.Minute) // under typical proxy and server idle timeouts
		db.SetMaxIdleConns(10)
		// A burst of requests (a window of small files in flight) queues for
		// a connection instead of passing MariaDB's max_connections (151 by
		// default), which fails everyone's queries with error 1040. Each
		// catalog call holds one connection at a time.
		db.SetMaxOpenConns(MaxOpenConns)
	}
	if err := checkSession(ctx, db, d); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata.Open: %w", err)
	}
	if err := migrate(ctx, db, d); err != nil {
		db.Close()
		return nil, err
	}
	scope, err := lockScope(ctx, db, d, dsn)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata.Open: %w", err)
	}
	return &Store{catalog: catalog{d: d, db: db, q: db}, lockScope: scope}, nil
}

func mysqlDSN(dsn string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", err
	}
	if cfg.DBName == "" {
		return "", fmt.Errorf("%w: the MySQL DSN must name a database", ErrInvalid)
	}
	cfg.ParseTime = true
	cfg.MultiStatements = false
	cfg.ClientFoundRows = true
	if !strings.Contains(dsn, "interpolateParams=") {
		// One round trip per statement instead of prepare, execute and
		// close: the catalog is on every upload's path.
		cfg.InterpolateParams = true
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		// Strict: a value too long for its column is an error, not a silent truncation that
		// could merge two names; no silent switch away from InnoDB.
		cfg.Params["sql_mode"] = "'TRADITIONAL'"
	}
	return cfg.FormatDSN(), nil
}

func sqliteDSN(dsn string) string {
	params := url.Values{}
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout))
	params.Set("_txlock", "immediate")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + params.Encode()
}

// checkSession opens the first connection and fails early on a server or connection that would
// break the catalog's guarantees. It retries lock conflicts for a while: processes opening a new
// SQLite file at once race to switch it to WAL, and SQLite answers the loser SQLITE_BUSY without
// waiting (waiting could deadlock).
func checkSession(ctx context.Context, db *sql.DB, d dialect) error {
	deadline := time.Now().Add(sqliteBusyTimeout * time.Millisecond)
	for {
		err := checkSessionOnce(ctx, db, d)
		if err == nil || !d.busy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func checkSessionOnce(ctx context.Context, db *sql.DB, d dialect) error {
	switch d.(type) {
	case sqliteDialect:
		var fk int
		if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			return err
		}
		if fk != 1 {
			return errors.New("sqlite: foreign keys are off")
		}
	default:
		if err := db.PingContext(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database connections.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("metadata.Close: %w", err)
	}
	return nil
}

// InTx runs fn in one transaction: committed if fn returns nil, rolled back if it returns an error
// or panics. fn must use only tx, not s: on SQLite the store has one connection, which the
// transaction holds, so a call on s inside fn would wait forever.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	if err := s.inTx(ctx, func(c catalog) error { return fn(&Tx{c}) }); err != nil {
		return fmt.Errorf("metadata.InTx: %w", err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// catalog holds the queries, shared by Store (q is the pool) and Tx (q is the transaction).
type catalog struct {
	d  dialect
	db *sql.DB
	q  querier
	tx *sql.Tx // nil outside a transaction
}

// inTx runs fn in a transaction of its own, or in the current one if c is already in one.
func (c catalog) inTx(ctx context.Context, fn func(c catalog) error) (err error) {
	if c.tx != nil {
		return fn(c)
	}
	// A transaction the server chose as a deadlock victim (or that waited
	// too long for a lock) was rolled back whole: run it again, a few times.
	for attempt := 1; ; attempt++ {
		err = c.inTxOnce(ctx, fn)
		if err == nil || !c.d.busy(err) || attempt == txAttempts || ctx.Err() != nil {
			return err
		}
	}
}

// txAttempts is how often inTx runs a transaction that lost a deadlock.
const txAttempts = 4

func (c catalog) inTxOnce(ctx context.Context, fn func(c catalog) error) (err error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			// Rollback can only fail if the transaction is already gone (ctx done), which
			// rolled it back.
			_ = tx.Rollback()
		}
	}()
	if err = fn(catalog{d: c.d, db: c.db, q: tx, tx: tx}); err != nil {
		return err
	}
	return tx.Commit()
}

// fail wraps err with op and translates driver errors into the package's sentinels. fk is what a
// foreign key violation means for this statement when the driver cannot say which side of the
// key failed (SQLite): ErrReferenced for deletes, ErrNotFound for inserts.
func (c catalog) fail(op string, err error, fk error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("metadata.%s: %w", op, ErrNotFound)
	}
	if (unreachable(err) || c.d.busy(err)) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("metadata.%s: %w (%v)", op, ErrUnavailable, err)
	}
	var sentinel error
	switch c.d.classify(err) {
	case violDuplicate:
		sentinel = ErrConflict
	case violReferenced:
		sentinel = ErrReferenced
	case violMissing:
		sentinel = ErrNotFound
	case violForeignKey:
		sentinel = fk
	}
	if sentinel == nil {
		return fmt.Errorf("metadata.%s: %w", op, err)
	}
	// Keep the driver's text (it names the key) for logs, but not its type in the chain.
	return fmt.Errorf("metadata.%s: %w (%v)", op, sentinel, err)
}

// now is the store's clock: UTC, microsecond precision (what the columns keep).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Timestamps are stored as INTEGER/BIGINT unix microseconds, UTC, in both dialects: portable,
// sortable, no time-zone or DATETIME-precision differences between drivers.
func toMicros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// optMicros maps the zero time ("never") to NULL.
func optMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromOptMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// notEmpty returns ErrInvalid naming the first empty value; pairs are name, value.
func notEmpty(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return fmt.Errorf("%w: empty %s", ErrInvalid, pairs[i])
		}
	}
	return nil
}

// affectedOne turns "no row matched" into ErrNotFound. (MySQL is opened with clientFoundRows,
// so a matched row that the update left unchanged still counts.)
func affectedOne(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
