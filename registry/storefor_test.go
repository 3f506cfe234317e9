package registry_test

import (
	"testing"

	"backupstore/fault"
	"backupstore/registry"
	"backupstore/storage"
)

// TestStoreFor: a backup without a storage id lives on the service's default
// storage, one with an id on that storage of its own tenant only; a registry
// cannot be built without the default storage it answers for "".
func TestStoreFor(t *testing.T) {
	ctx := t.Context()
	cat, ring, local := registry.NewTestDeps(t)
	if _, err := registry.New(registry.Config{Catalog: cat, Keyring: ring}); err == nil {
		t.Fatal("New without a ServiceStore succeeded")
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
