package maintenance_test

import (
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"backupstore/internal/testenv"
	"backupstore/maintenance"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/secrets"
	"backupstore/storage"
)

// env is a maintenance Service on a real catalog, with the service-default storage on a fresh
// versitygw bucket (wrapped by the test when it needs to misbehave) and a clock the test sets.
type env struct {
	catalog *metadata.Store
	store   *storage.S3
	svc     *maintenance.Service
	hooks   *maintenance.Hooks // set a hook before the call that should run it
	mu      sync.Mutex
	now     time.Time
}

// clock is the Service's clock: what the test last set, never real time passing.
func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) setClock(t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = t
}

// newEnv opens a catalog on driver ("mysql" or "sqlite"), a bucket, and a Service whose
// service-default store is wrap(bucket store) (wrap may be nil). Grace is one hour.
func newEnv(t *testing.T, driver string, wrap func(storage.Store) storage.Store) *env {
	t.Helper()
	gw := testenv.VersityGW(t)
	dsn := t.TempDir() + "/catalog.db"
	if driver == "mysql" {
		dsn = testenv.MySQLDSN(t)
	}
	cat, err := metadata.Open(t.Context(), driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	st, err := storage.NewS3(storage.S3Config{Region: gw.Region, Bucket: gw.NewBucket(t), AccessKeyID: gw.RootKey,
		SecretAccessKey: gw.RootSecret, Endpoint: gw.Endpoint, PathStyle: true, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ring := newKeyring(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &env{catalog: cat, store: st, now: time.Now(), hooks: &maintenance.Hooks{}}
	var svcStore storage.Store = st
	if wrap != nil {
		svcStore = wrap(st)
	}
	reg, err := registry.New(registry.Config{Catalog: cat, Keyring: ring, Logger: log, ServiceStore: svcStore, AllowEndpoints: "127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = maintenance.New(maintenance.Config{Catalog: cat, Registry: reg, Logger: log,
		Replica: "test", Grace: time.Hour, Now: e.clock, Hooks: e.hooks})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newKeyring is a keyring with one fresh random key.
func newKeyring(t *testing.T) *secrets.Keyring {
	t.Helper()
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	ring, err := secrets.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// forEachCatalog runs fn on MariaDB and SQLite.
func forEachCatalog(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range []string{"mysql", "sqlite"} {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}
