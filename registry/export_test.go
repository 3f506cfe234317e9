package registry

import (
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"backupstore/metadata"
	"backupstore/secrets"
	"backupstore/storage"
)

// SetClock makes r read the time from now (Client's recheck of a cached row).
func SetClock(r *Registry, now func() time.Time) { r.now = now }

// SetBeforeRecheck calls f in the one Client call that reads a stale cached row again, before
// it does.
func SetBeforeRecheck(r *Registry, f func(id string)) { r.beforeRecheck = f }

// NewTestDeps returns what a Registry needs, for tests: a SQLite catalog, a keyring with a random
// master key and a local-directory store, all in t's temporary directories.
func NewTestDeps(t *testing.T) (*metadata.Store, *secrets.Keyring, *storage.Local) {
	t.Helper()
	cat, err := metadata.Open(t.Context(), "sqlite", filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	ring, err := secrets.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return cat, ring, local
}
