// Package budget is the service-wide memory budget for buffered bytes,
// shared fairly between tenants. A stream reserves what it buffers before it
// buffers it, so peak memory stays within the budget whatever the object
// sizes and stream counts; a tenant holds at most its share, so one tenant's
// streams never take the memory every other tenant needs.
//
// budget imports nothing from backupstore.
package budget

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrTooLarge means a single request asks for more than a tenant may ever
// hold (its share, or the whole budget).
var ErrTooLarge = errors.New("budget: request exceeds what one tenant may hold")

// ErrBusy means a request could not be served within the budget's MaxWait.
// The error is a *BusyError, which says when a retry may succeed.
var ErrBusy = errors.New("budget: busy")

// BusyError is the ErrBusy a waiting Acquire ends with.
type BusyError struct {
	// AtShare: the tenant itself holds its whole share (else the budget is in
	// use by others, each within its share).
	AtShare bool
	// RetryAfter is a hint for when to try again.
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	if e.AtShare {
		return "budget: the tenant holds its whole share of the memory budget"
	}
	return "budget: the memory budget is in use"
}

// Is makes errors.Is(err, ErrBusy) hold.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Config configures a shared Budget.
type Config struct {
	// Size is the whole budget in bytes.
	Size int64
	// TenantShare is the most bytes one tenant may hold at once. 0: Size (no
	// per-tenant cap; right when there is one tenant).
	TenantShare int64
	// MaxWait bounds how long Acquire waits; past it Acquire returns a
	// *BusyError. 0: Acquire waits as long as its context lets it.
	MaxWait time.Duration
}

func (c *Config) validate() error {
	switch {
	case c.Size <= 0:
		return fmt.Errorf("budget: Size must be > 0, not %d", c.Size)
	case c.TenantShare < 0 || c.TenantShare > c.Size:
		return fmt.Errorf("budget: TenantShare %d must be between 0 and Size %d", c.TenantShare, c.Size)
	case c.MaxWait < 0:
		return fmt.Errorf("budget: MaxWait must be ≥ 0, not %v", c.MaxWait)
	}
	return nil
}

// Budget is a weighted semaphore over bytes with a share per tenant. Waiting
// is per tenant: a tenant's requests are served in order (a large one is not
// starved by the same tenant's small ones), and the heads of the tenants'
// queues are served round robin, each as soon as it fits both the budget
// and its tenant's share — a tenant at its share, or with a large request
// that does not fit yet, never holds up another tenant's request that fits.
// Safe for concurrent use.
type Budget struct {
	cfg Config

	mu      sync.Mutex
	used    int64
	peak    int64
	tenants map[string]*tenant
	ring    []string // tenants with waiters, in round-robin order
	next    int      // ring position served first next time
}

type tenant struct {
	used  int64
	queue []*waiter
}

type waiter struct {
	n     int64
	ready chan struct{}
}

// New returns a budget of size bytes with no per-tenant share and no bound
// on waiting.
func New(size int64) *Budget {
	return &Budget{cfg: Config{Size: size, TenantShare: size}, tenants: map[string]*tenant{}}
}

// NewShared returns a budget configured by cfg.
func NewShared(cfg Config) (*Budget, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.TenantShare == 0 {
		cfg.TenantShare = cfg.Size
	}
	return &Budget{cfg: cfg, tenants: map[string]*tenant{}}, nil
}

// Size returns the total budget.
func (b *Budget) Size() int64 { return b.cfg.Size }

// TenantShare returns the most one tenant may hold at once.
func (b *Budget) TenantShare() int64 { return b.cfg.TenantShare }

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// UsedBy returns the bytes the tenant holds now.
func (b *Budget) UsedBy(tenantID string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.tenants[tenantID]; t != nil {
		return t.used
	}
	return 0
}

// Peak returns the most bytes ever reserved at once.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// Acquire is AcquireFor on behalf of no particular tenant ("").
func (b *Budget) Acquire(ctx context.Context, n int64) error { return b.AcquireFor(ctx, "", n) }

// TryAcquire is TryAcquireFor on behalf of no particular tenant ("").
func (b *Budget) TryAcquire(n int64) bool { return b.TryAcquireFor("", n) }

// Release is ReleaseFor on behalf of no particular tenant ("").
func (b *Budget) Release(n int64) { b.ReleaseFor("", n) }

// AcquireFor reserves n bytes for the tenant, waiting until they are free
// (within the budget and the tenant's share) or ctx ends (its error) or
// MaxWait passes (a *BusyError). A request larger than the tenant's share
// fails at once with ErrTooLarge.
func (b *Budget) AcquireFor(ctx context.Context, tenantID string, n int64) error {
	if n > b.cfg.TenantShare {
		return fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, n, b.cfg.TenantShare)
	}
	b.mu.Lock()
	t := b.tenant(tenantID)
	if len(t.queue) == 0 && b.fits(t, n) {
		b.take(t, n)
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	if len(t.queue) == 0 {
		b.ring = append(b.ring, tenantID)
	}
	t.queue = append(t.queue, w)
	b.mu.Unlock()

	var timeout <-chan time.Time
	if b.cfg.MaxWait > 0 {
		tm := time.NewTimer(b.cfg.MaxWait)
		defer tm.Stop()
		timeout = tm.C
	}
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = &BusyError{RetryAfter: max(b.cfg.MaxWait, time.Second)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.give(tenantID, n)
	default:
		if be, ok := err.(*BusyError); ok {
			be.AtShare = t.used+n > b.cfg.TenantShare
		}
		b.dequeue(tenantID, w)
	}
	b.grant() // we may have been blocking our tenant's queue
	return err
}

// TryAcquireFor reserves n bytes for the tenant if they are free now and
// none of the tenant's requests is waiting.
func (b *Budget) TryAcquireFor(tenantID string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tenant(tenantID)
	if len(t.queue) == 0 && b.fits(t, n) {
		b.take(t, n)
		return true
	}
	b.forget(tenantID, t)
	return false
}

// ReleaseFor returns n bytes the tenant acquired.
func (b *Budget) ReleaseFor(tenantID string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.give(tenantID, n)
	b.grant()
}

// tenant returns the tenant's state, creating it. Caller holds mu.
func (b *Budget) tenant(id string) *tenant {
	t := b.tenants[id]
	if t == nil {
		t = &tenant{}
		b.tenants[id] = t
	}
	return t
}

// forget drops a tenant's state once it holds and waits for nothing.
func (b *Budget) forget(id string, t *tenant) {
	if t.used == 0 && len(t.queue) == 0 {
		delete(b.tenants, id)
	}
}

func (b *Budget) fits(t *tenant, n int64) bool {
	return b.used+n <= b.cfg.Size && t.used+n <= b.cfg.TenantShare
}

func (b *Budget) take(t *tenant, n int64) {
	b.used += n
	t.used += n
	if b.used > b.peak {
		b.peak = b.used
	}
}

func (b *Budget) give(id string, n int64) {
	t := b.tenants[id]
	if t == nil || t.used < n {
		panic("budget: released more than acquired")
	}
	t.used -= n
	b.used -= n
	b.forget(id, t)
}

// dequeue removes a waiter that gave up. Caller holds mu.
func (b *Budget) dequeue(id string, w *waiter) {
	t := b.tenants[id]
	for i, x := range t.queue {
		if x == w {
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			break
		}
	}
	if len(t.queue) == 0 {
		b.unring(id)
	}
	b.forget(id, t)
}

func (b *Budget) unring(id string) {
	for i, x := range b.ring {
		if x == id {
			b.ring = append(b.ring[:i], b.ring[i+1:]...)
			if b.next > i {
				b.next--
			}
			return
		}
	}
}

// grant serves the tenants' queue heads round robin: from the tenant after
// the last one served, the first head that fits (the budget and its
// tenant's share) is served, again and again until none fits. A head that
// does not fit keeps its turn. Caller holds mu.
func (b *Budget) grant() {
	for len(b.ring) > 0 {
		served := false
		for k := 0; k < len(b.ring); k++ {
			i := (b.next + k) % len(b.ring)
			id := b.ring[i]
			t := b.tenants[id]
			w := t.queue[0]
			if !b.fits(t, w.n) {
				continue
			}
			b.take(t, w.n)
			close(w.ready)
			t.queue = t.queue[1:]
			if len(t.queue) == 0 {
				b.ring = append(b.ring[:i], b.ring[i+1:]...)
				b.next = i // the tenant after it
			} else {
				b.next = i + 1
			}
			if b.next >= len(b.ring) {
				b.next = 0
			}
			served = true
			break
		}
		if !served {
			return
		}
	}
}
