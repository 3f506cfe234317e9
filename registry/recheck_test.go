package registry

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"backupstore/metadata"
)

// TestClientRechecksOnce: once a cached storage row is clientRecheck old, exactly one caller
// reads it again; while that read is parked, every other caller gets the cached client at once
// (no herd of catalog reads, nobody waits), and the re-read row is cached for the next
// clientRecheck. With one recheck per caller, the parked read would be joined by 20 more.
func TestClientRechecksOnce(t *testing.T) {
	ctx := t.Context()
	cat, ring, local := NewTestDeps(t)
	r, err := New(Config{Catalog: cat, Keyring: ring, ServiceStore: local})
	if err != nil {
		t.Fatal(err)
	}
	ct, keyID, err := ring.Seal("secret-1", aad("t1", "stg-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.CreateStorage(ctx, &metadata.Storage{ID: "stg-1", TenantID: "t1", Name: "one", Region: "eu-west-3",
		Bucket: "b", AccessKeyID: "AKIAONE", SecretCiphertext: ct, SecretKeyID: keyID, Endpoint: "http://127.0.0.1:1",
		Status: "VALID"}); err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	SetClock(r, func() time.Time { return time.Unix(0, now.Load()) })
	var rechecks atomic.Int32
	parked, release := make(chan struct{}), make(chan struct{})
	SetBeforeRecheck(r, func(string) {
		if rechecks.Add(1) == 1 {
			close(parked)
			<-release
		}
	})

	first, _, err := r.Client(ctx, "t1", "stg-1") // not cached: read, no recheck
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := r.Client(ctx, "t1", "stg-1"); err != nil || c != first || rechecks.Load() != 0 {
		t.Fatalf("a fresh cached client: %p, %v, %d rechecks; want %p, none", c, err, rechecks.Load(), first)
	}
	now.Add(int64(clientRecheck + time.Second))
	done := make(chan error, 1)
	go func() {
		c, _, err := r.Client(ctx, "t1", "stg-1")
		if err == nil && c != first {
			t.Errorf("recheck of an unchanged row built a new client")
		}
		done <- err
	}()
	<-parked
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if c, _, err := r.Client(ctx, "t1", "stg-1"); err != nil || c != first {
				t.Errorf("while the row is re-read: %p, %v; want the cached client", c, err)
			}
		})
	}
	wg.Wait() // returned while the recheck is parked: nobody waited for it
	if n := rechecks.Load(); n != 1 {
		t.Errorf("%d callers re-read the row, want 1", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Client(ctx, "t1", "stg-1"); err != nil || rechecks.Load() != 1 {
		t.Errorf("after the recheck: %v, %d rechecks; want the row cached again", err, rechecks.Load())
	}
	// Another tenant never gets the cached client, stale or not.
	if _, _, err := r.Client(ctx, "t2", "stg-1"); err == nil {
		t.Error("another tenant's storage id answered with this tenant's client")
	}
}
