package client_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"backupstore/ingest"
	"backupstore/internal/app"
	"backupstore/secrets"
	"backupstore/storage"
)

// startServer runs the real service (internal/app: SQLite catalog in dir,
// local-directory default storage under dir, no auth) on a loopback port.
// wrap, if set, wraps the default storage (fault injection); tweaks change
// the configuration.
func startServer(dir string, wrap func(storage.Store) storage.Store, tweaks ...func(*app.Config)) (addr string, stop func(), err error) {
	key := make([]byte, 32)
	rand.Read(key)
	ring, err := secrets.NewKeyring(key)
	if err != nil {
		return "", nil, err
	}
	local, err := storage.NewLocal(storage.LocalConfig{Root: filepath.Join(dir, "objects")})
	if err != nil {
		return "", nil, err
	}
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o755); err != nil {
		return "", nil, err
	}
	cfg := app.Config{
		Catalog:      app.CatalogConfig{Driver: "sqlite", DSN: filepath.Join(dir, "catalog.db")},
		Keyring:      ring,
		ServiceStore: local,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Auth:         app.AuthConfig{Mode: "none", DevTenant: "dev"},
		Memory:       app.MemoryConfig{Total: 256 << 20},
		Ingest:       ingest.Config{PartSize: 5 << 20, SpoolDir: spool},
		Hooks:        app.Hooks{WrapServiceStore: wrap},
	}
	for _, f := range tweaks {
		f(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		return "", nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		return "", nil, err
	}
	go a.Serve(lis)
	return lis.Addr().String(), func() { a.Close() }, nil
}

// serve is startServer for a test.
func serve(t *testing.T, wrap func(storage.Store) storage.Store, tweaks ...func(*app.Config)) string {
	t.Helper()
	addr, stop, err := startServer(t.TempDir(), wrap, tweaks...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}
