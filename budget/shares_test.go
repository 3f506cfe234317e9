package budget

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitQueued waits until the tenant has n requests waiting (polling the
// budget's state, not sleeping for ordering).
func waitQueued(t *testing.T, b *Budget, tenantID string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := 0
		if tt := b.tenants[tenantID]; tt != nil {
			got = len(tt.queue)
		}
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %q has %d waiting, want %d", tenantID, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func acquireAsync(b *Budget, tenantID string, n int64) chan error {
	ch := make(chan error, 1)
	go func() { ch <- b.AcquireFor(context.Background(), tenantID, n) }()
	return ch
}

func granted(t *testing.T, ch chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not granted")
	}
}

func pending(t *testing.T, ch chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("granted (%v) while it should wait", err)
	default:
	}
}

// A tenant holds at most its share: at it, its own requests wait (or fail
// TryAcquire) while another tenant is served at once.
func TestTenantShare(t *testing.T) {
	b, err := NewShared(Config{Size: 100, TenantShare: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AcquireFor(context.Background(), "b", 41); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the share: %v, want ErrTooLarge", err)
	}
	for i := 0; i < 4; i++ {
		if err := b.AcquireFor(context.Background(), "b", 10); err != nil {
			t.Fatal(err)
		}
	}
	if b.TryAcquireFor("b", 1) {
		t.Fatal("tenant b got more than its share")
	}
	waitB := acquireAsync(b, "b", 10)
	waitQueued(t, b, "b", 1)
	if !b.TryAcquireFor("a", 40) {
		t.Fatal("tenant a was refused while b waits at its share")
	}
	pending(t, waitB)
	b.ReleaseFor("b", 10)
	granted(t, waitB)
	if got := b.UsedBy("b"); got != 40 {
		t.Fatalf("b holds %d, want 40", got)
	}
	b.ReleaseFor("a", 40)
	for i := 0; i < 4; i++ {
		b.ReleaseFor("b", 10)
	}
	if b.Used() != 0 || len(b.tenants) != 0 {
		t.Fatalf("used %d, %d tenants tracked after all released", b.Used(), len(b.tenants))
	}
}

// Two tenants, one flooding the queue with large requests: the other's
// request is served next, not after the flood.
func TestFairBetweenTenants(t *testing.T) {
	b, err := NewShared(Config{Size: 100, TenantShare: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AcquireFor(context.Background(), "b", 100); err != nil {
		t.Fatal(err)
	}
	var flood []chan error
	for i := 0; i < 5; i++ {
		flood = append(flood, acquireAsync(b, "b", 50))
		waitQueued(t, b, "b", i+1)
	}
	small := acquireAsync(b, "a", 10)
	waitQueued(t, b, "a", 1)
	// 60 bytes free: one of b's and a's small request are served (FIFO would
	// serve b's whole flood first).
	b.ReleaseFor("b", 60)
	granted(t, flood[0])
	granted(t, small)
	for _, ch := range flood[1:] {
		pending(t, ch)
	}
	// A large head of b that does not fit never holds up a's small one.
	b.ReleaseFor("a", 10)
	if !b.TryAcquireFor("a", 10) {
		t.Fatal("a's request that fits was held behind b's queue")
	}
	b.ReleaseFor("a", 10)
	b.ReleaseFor("b", 40) // 50 free
	granted(t, flood[1])
	pending(t, flood[2])
	b.ReleaseFor("b", 50)
	granted(t, flood[2])
	for _, ch := range flood[3:] {
		pending(t, ch)
	}
}

// Round robin: with both tenants queued, releases alternate between them.
func TestRoundRobin(t *testing.T) {
	b, _ := NewShared(Config{Size: 10})
	if err := b.AcquireFor(context.Background(), "x", 10); err != nil {
		t.Fatal(err)
	}
	var as, bs []chan error
	for i := 0; i < 3; i++ {
		as = append(as, acquireAsync(b, "a", 10))
		waitQueued(t, b, "a", i+1)
	}
	for i := 0; i < 3; i++ {
		bs = append(bs, acquireAsync(b, "b", 10))
		waitQueued(t, b, "b", i+1)
	}
	b.ReleaseFor("x", 10)
	granted(t, as[0])
	pending(t, bs[0])
	b.ReleaseFor("a", 10)
	granted(t, bs[0])
	pending(t, as[1])
	b.ReleaseFor("b", 10)
	granted(t, as[1])
	pending(t, bs[1])
}

// Waiting is bounded: past MaxWait a request fails with a *BusyError that
// says whether the tenant is at its share, and leaves the queue clean.
func TestMaxWait(t *testing.T) {
	b, _ := NewShared(Config{Size: 100, TenantShare: 50, MaxWait: 20 * time.Millisecond})
	if err := b.AcquireFor(context.Background(), "b", 50); err != nil {
		t.Fatal(err)
	}
	err := b.AcquireFor(context.Background(), "b", 1)
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, ErrBusy) || !be.AtShare || be.RetryAfter <= 0 {
		t.Fatalf("at share: %v (%+v)", err, be)
	}
	if err := b.AcquireFor(context.Background(), "a", 50); err != nil {
		t.Fatal(err)
	}
	err = b.AcquireFor(context.Background(), "c", 1)
	if !errors.As(err, &be) || be.AtShare {
		t.Fatalf("budget full: %v (%+v)", err, be)
	}
	b.ReleaseFor("a", 50)
	b.ReleaseFor("b", 50)
	if b.Used() != 0 || len(b.ring) != 0 || len(b.tenants) != 0 {
		t.Fatalf("used %d, ring %v, tenants %d", b.Used(), b.ring, len(b.tenants))
	}
}

func TestNewSharedValidates(t *testing.T) {
	for _, c := range []Config{{}, {Size: 10, TenantShare: 11}, {Size: 10, MaxWait: -1}} {
		if _, err := NewShared(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
