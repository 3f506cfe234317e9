package metadata

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TryLock takes the named lock, shared by every process on this catalog, without waiting: ok is
// false (and err nil) when someone else holds it. release frees it; it is idempotent, and a no-op
// when ok is false. Locks with different names are independent, and a second TryLock of a held
// name fails even from the same Store.
//
// MySQL: GET_LOCK(name, 0) on a dedicated connection, taken out of the pool and held until
// release, which runs RELEASE_LOCK and then gives the connection back (or, if RELEASE_LOCK
// fails, closes it). The name is scoped to the database (GET_LOCK names are server-wide), so two
// catalogs on one server do not exclude each other. The lock belongs to the session: if the
// connection dies (server restart, network failure, a proxy's or wait_timeout's idle kill), the
// lock is gone and another replica can take it while this holder still believes it has it.
// TryLock pings the connection every minute to keep idle timeouts away, but cannot prevent the
// rest, nor tell the holder: work under the lock must stay safe if it ever runs twice at once
// (compare-and-set and idempotent steps); the lock makes that rare, not impossible.
//
// SQLite (one process by design): an in-process lock per (database file, name); a second process
// on the same file is not excluded. An in-memory database is its own scope.
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	const op = "TryLock"
	noop := func() {}
	if err := notEmpty("lock name", name); err != nil {
		return noop, false, s.fail(op, err, nil)
	}
	release, ok, err = s.d.tryLock(ctx, s.db, s.lockScope, name)
	if err != nil {
		return noop, false, s.fail(op, fmt.Errorf("lock %q: %w", name, err), nil)
	}
	if !ok {
		return noop, false, nil
	}
	return release, true, nil
}

// lockKeepalive is how often a held MySQL lock's connection is pinged: well under proxy and
// server idle timeouts.
const lockKeepalive = time.Minute

// maxLockName is MySQL's limit on a GET_LOCK name (characters).
const maxLockName = 64

// mysqlLockName scopes name to the database; a name too long for GET_LOCK becomes a hash of it.
func mysqlLockName(database, name string) string {
	full := database + "/" + name
	if len(full) <= maxLockName {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	return "backupstore-" + hex.EncodeToString(sum[:])[:maxLockName-len("backupstore-")]
}

func (mysqlDialect) tryLock(ctx context.Context, db *sql.DB, scope, name string) (func(), bool, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, false, err
	}
	lock := mysqlLockName(scope, name)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil {
		// The lock may have been granted before the error (a canceled context): end the
		// session rather than pool it.
		discardConn(conn)
		return nil, false, err
	}
	switch {
	case !got.Valid:
		discardConn(conn)
		return nil, false, fmt.Errorf("GET_LOCK(%s) returned NULL", lock)
	case got.Int64 != 1:
		conn.Close()
		return nil, false, nil
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(lockKeepalive)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
				err := conn.PingContext(ctx)
				cancel()
				if err != nil {
					return // the session, and the lock, are gone
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			defer cancel()
			if _, err := conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", lock); err != nil {
				// The lock goes with the session.
				discardConn(conn)
				return
			}
			conn.Close()
		})
	}, true, nil
}

// discardConn closes conn's session instead of returning it to the pool.
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// sqliteLocks are the SQLite locks held in this process, by scope and name.
var sqliteLocks = struct {
	sync.Mutex
	held map[string]bool
}{held: map[string]bool{}}

func (sqliteDialect) tryLock(_ context.Context, _ *sql.DB, scope, name string) (func(), bool, error) {
	key := scope + "\x00" + name
	sqliteLocks.Lock()
	defer sqliteLocks.Unlock()
	if sqliteLocks.held[key] {
		return nil, false, nil
	}
	sqliteLocks.held[key] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			sqliteLocks.Lock()
			delete(sqliteLocks.held, key)
			sqliteLocks.Unlock()
		})
	}, true, nil
}

// memoryScopes numbers the in-memory SQLite databases, each its own lock scope.
var memoryScopes atomic.Int64

// lockScope is the namespace of TryLock's names: the MySQL database's name; the SQLite database's
// file, as SQLite resolved it, with symbolic links resolved too.
func lockScope(ctx context.Context, db *sql.DB, d dialect, dsn string) (string, error) {
	if _, ok := d.(sqliteDialect); !ok {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			return "", err
		}
		return cfg.DBName, nil
	}
	var file string
	if err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
		return "", fmt.Errorf("sqlite database file: %w", err)
	}
	if file == "" {
		return "memory#" + strconv.FormatInt(memoryScopes.Add(1), 10), nil
	}
	if real, err := filepath.EvalSymlinks(file); err == nil {
		file = real
	}
	return filepath.Clean(file), nil
}
