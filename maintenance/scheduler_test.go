package maintenance_test

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"backupstore/maintenance"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/storage"
)

// A scheduled pass cleans every tenant, and skips (without failing) the one
// whose maintenance lock another replica holds.
func TestCleanupAllSkipsATenantLockedElsewhere(t *testing.T) {
	ctx := t.Context()
	cat, err := metadata.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	for _, tenant := range []string{"busy", "free"} {
		if err := cat.EnsureTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	ring := newKeyring(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Catalog: cat, Keyring: ring, Logger: log, ServiceStore: local})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := maintenance.New(maintenance.Config{Catalog: cat, Registry: reg, Logger: log, Replica: "test"})
	if err != nil {
		t.Fatal(err)
	}
	release, ok, err := cat.TryLock(ctx, maintenance.LockName+":busy")
	if err != nil || !ok {
		t.Fatalf("TryLock: %v %v", ok, err)
	}
	defer release()

	svc.CleanupAll(ctx)

	out := logs.String()
	if !strings.Contains(out, "scheduled cleanup skipped for a tenant") || !strings.Contains(out, "tenant=busy") {
		t.Errorf("no skip logged for the locked tenant:\n%s", out)
	}
	if strings.Contains(out, "scheduled cleanup failed") {
		t.Errorf("a pass with a busy tenant logged a failure:\n%s", out)
	}
	for tenant, want := range map[string]int{"busy": 0, "free": 1} {
		runs, _, err := cat.ListMaintenanceRuns(ctx, tenant, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != want || (want == 1 && runs[0].Kind != "cleanup") {
			t.Errorf("tenant %s: %d maintenance runs %+v, want %d cleanup", tenant, len(runs), runs, want)
		}
	}
}
