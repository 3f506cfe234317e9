package registry_test

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/secrets"
	"backupstore/storage"
)

// TestStoreFor: a backup without a storage id lives on the service's default
// storage, one with an id on that storage of its own tenant only; a registry
// cannot be built without the default storage it answers for "".
func TestStoreFor(t *testing.T) {
	ctx := t.Context()
	cat, err := metadata.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "catalog.db"))
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
	if _, err := registry.New(registry.Config{Catalog: cat, Keyring: ring}); err == nil {
		t.Fatal("New without a ServiceStore succeeded")
	}
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Catalog: cat, Keyring: ring, ServiceStore: local})
	if err != nil {
		t.Fatal(err)
	}
	st, err := reg.StoreFor(ctx, "t1", "")
	if err != nil || st != storage.Store(local) {
		t.Fatalf(`StoreFor "" = %v, %v; want the service store`, st, err)
	}
	st, err = reg.StoreFor(ctx, "t1", "stg-unknown")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.NotFound || st != nil {
		t.Fatalf("StoreFor of an unknown storage = %v, %v; want NotFound and no store", st, err)
	}
}
